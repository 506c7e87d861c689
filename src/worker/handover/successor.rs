//! Who receives a leaver's items (README, "Hand-over before removal"): resolved once per
//! chain, from the job's `successor_email` or `successor_account_id` (a rule's pointer
//! already read into one of them), else `[handover] fallback_successor`. It must be an
//! active managed account, and not the leaver. It only receives: the guards that protect
//! accounts from being acted on do not apply to it.

use super::super::execute::{Step, classify_lookup_error};
use crate::atlassian::{Account, Client};
use crate::domain::{ApiFamily, Job, SuccessorRef};

/// The successor's account id, and whether it was resolved just now (so it must be
/// recorded): the job's own, else the one the chain's earlier step recorded, else looked up.
pub(super) async fn resolve(
    client: &Client,
    job: &Job,
    earlier: Option<&Job>,
    fallback: Option<&SuccessorRef>,
    leaver: &str,
) -> Result<(String, bool), Step> {
    if let Some(id) = &job.successor_account_id {
        return Ok((id.to_string(), false));
    }
    if let Some(id) = earlier.and_then(|e| e.successor_account_id.as_ref()) {
        return Ok((id.to_string(), true));
    }
    let asked = SuccessorRef::from_params(&job.params)
        .or_else(|| fallback.cloned())
        .ok_or_else(|| {
            Step::failed(
                "no_successor",
                format!(
                    "{} names no successor, and [handover] fallback_successor is not set",
                    job.action
                ),
            )
        })?;
    let account = look_up(client, &asked).await?;
    check(&account, &asked, leaver)?;
    Ok((account.account_id, true))
}

/// The one managed account the successor names.
async fn look_up(client: &Client, asked: &SuccessorRef) -> Result<Account, Step> {
    let call = "the successor's lookup";
    let found = match asked {
        SuccessorRef::Email(email) => client.find_directory_accounts(email).await,
        SuccessorRef::AccountId(id) => client.directory_user(id).await.map(Vec::from_iter),
    };
    let accounts = found.map_err(|e| classify_lookup_error(e, ApiFamily::Admin, call))?;
    match accounts.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Step::failed(
            "no_successor",
            format!("the successor ({asked}) is not in the org directory"),
        )),
        many => Err(Step::failed(
            "no_successor",
            format!(
                "the successor ({asked}) names {} accounts: {}",
                many.len(),
                many.iter()
                    .map(|a| a.account_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// An active `atlassian` account that is not the leaver.
fn check(account: &Account, asked: &SuccessorRef, leaver: &str) -> Result<(), Step> {
    if account.account_id == leaver {
        return Err(Step::failed(
            "successor_is_leaver",
            format!("the successor ({asked}) is the leaver: nothing would be handed over"),
        ));
    }
    if account.account_type != "atlassian" {
        return Err(Step::failed(
            "no_successor",
            format!(
                "the successor ({asked}) is a `{}` account, not a managed (`atlassian`) one",
                account.account_type
            ),
        ));
    }
    let active = account.status.as_deref() == Some("active")
        && account
            .directory_status
            .as_deref()
            .is_none_or(|status| status == "active");
    if !active {
        return Err(Step::failed(
            "successor_inactive",
            format!(
                "the successor ({asked}), account {}, is not active (account {}, directory {})",
                account.account_id,
                account.status.as_deref().unwrap_or("unknown"),
                account.directory_status.as_deref().unwrap_or("unknown")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str, kind: &str, status: &str, directory: Option<&str>) -> Account {
        Account {
            account_id: id.into(),
            account_type: kind.into(),
            email: None,
            status: Some(status.into()),
            directory_status: directory.map(str::to_owned),
            membership_status: None,
        }
    }

    fn error(step: Result<(), Step>) -> String {
        match step {
            Err(Step::Failed { error, .. }) => error,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_successor_is_an_active_managed_account_other_than_the_leaver() {
        let asked = SuccessorRef::Email("boss@example.com".into());
        assert!(
            check(
                &account("b", "atlassian", "active", Some("active")),
                &asked,
                "l"
            )
            .is_ok()
        );
        assert!(check(&account("b", "atlassian", "active", None), &asked, "l").is_ok());
        assert_eq!(
            error(check(
                &account("l", "atlassian", "active", None),
                &asked,
                "l"
            )),
            "successor_is_leaver"
        );
        assert_eq!(
            error(check(
                &account("b", "customer", "active", None),
                &asked,
                "l"
            )),
            "no_successor"
        );
        assert_eq!(
            error(check(
                &account("b", "atlassian", "inactive", None),
                &asked,
                "l"
            )),
            "successor_inactive"
        );
        assert_eq!(
            error(check(
                &account("b", "atlassian", "active", Some("suspended")),
                &asked,
                "l"
            )),
            "successor_inactive"
        );
    }
}
