pub mod fake_atlassian;
