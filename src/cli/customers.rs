//! `offboard customers list` (README, "Customer inventory").

use std::io::IsTerminal as _;

use indicatif::ProgressBar;

use super::{CustomersCommand, Failure, load, print_json};
use crate::atlassian::{
    CallError, Client, CustomerFilter, Inventory, InventoryProgress, PortalCustomer,
};
use crate::config::Config;
use crate::domain::{ApiFamily, Domain};

pub(super) async fn customers(command: CustomersCommand) -> Result<(), Failure> {
    let CustomersCommand::List {
        domain,
        inactive,
        json,
        csv,
        config,
    } = command;
    let filter = CustomerFilter {
        domain: domain
            .map(|d| Domain::parse(&d))
            .transpose()
            .map_err(|why| Failure::Usage(format!("--domain: {why}")))?,
        inactive_only: inactive,
    };
    let customers = read_customers(&load(&config)?, &filter).await?;
    if json {
        print_json(&serde_json::json!({ "customers": customers }));
    } else if csv {
        crate::report::customers_csv(&customers, std::io::stdout().lock())
            .map_err(|e| Failure::Runtime(format!("cannot write the CSV: {e}")))?;
        let hidden = customers.iter().filter(|c| c.email.is_none()).count();
        if hidden > 0 {
            eprintln!(
                "note: {hidden} customers whose email is hidden are not in the CSV (jobs import needs an email); --json lists them"
            );
        }
    } else {
        print!("{}", crate::report::customers_table(&customers));
    }
    Ok(())
}

/// Reads the inventory with a client of this process (buckets of its own, at the worker's
/// rate), showing progress on stderr when a person is watching it.
async fn read_customers(
    config: &Config,
    filter: &CustomerFilter,
) -> Result<Vec<PortalCustomer>, Failure> {
    let not_configured = || {
        Failure::Usage(format!(
            "the site credentials are not configured in {}: set site_url, site_email and site_api_token in [atlassian]",
            config.origin
        ))
    };
    let atlassian = config.atlassian.as_ref().ok_or_else(not_configured)?;
    let client = Client::from_config(atlassian, config.worker.requests_per_second)
        .map_err(|e| Failure::Usage(format!("{e:#}")))?;
    if !client.is_configured(ApiFamily::Site) {
        return Err(not_configured());
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar.set_message("listing service desks");
        bar
    });
    let show = |progress: InventoryProgress| {
        if let Some(bar) = &bar {
            bar.set_message(progress_line(progress));
        }
    };
    let read = client.portal_customers(&show).await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    match read {
        Ok(inventory) => {
            note_left_out(&inventory);
            Ok(inventory
                .customers
                .into_iter()
                .filter(|c| filter.admits(c))
                .collect())
        }
        Err(CallError::NotConfigured { .. }) => Err(not_configured()),
        Err(err) => Err(Failure::Runtime(format!(
            "cannot read the customer inventory: {err}"
        ))),
    }
}

/// Says on stderr what the desks' lists held besides portal-only customers, so that a
/// shorter list than the desks show is never a silent one.
fn note_left_out(inventory: &Inventory) {
    if inventory.not_customers > 0 {
        eprintln!(
            "note: {} accounts on the service desks' customer lists are not portal-only customers (licensed accounts, apps) and are left out",
            inventory.not_customers
        );
    }
    if !inventory.unknown.is_empty() {
        eprintln!(
            "note: {} accounts on the service desks' customer lists could not be read by id (deleted since?) and are left out: {}",
            inventory.unknown.len(),
            crate::cell::for_terminal(&inventory.unknown.join(", "))
        );
    }
}

fn progress_line(progress: InventoryProgress) -> String {
    match progress.desks {
        None => format!("listing service desks ({} pages)", progress.pages),
        Some(desks) if progress.desks_done < desks => format!(
            "service desks {}/{desks}, {} pages, {} accounts",
            progress.desks_done, progress.pages, progress.accounts
        ),
        Some(_) => format!(
            "reading the accounts' own records {}/{}",
            progress.classified, progress.accounts
        ),
    }
}
