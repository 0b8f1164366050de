//! `verify` of the `projections/` environment: the environment's identity,
//! every checkpoint entry and document against its checksum, and every
//! checkpoint against the log.

use super::identity::{meta_entries, meta_mismatch};
use super::read_model::ProjEnv;
use super::sealed::unseal;
use crate::read::Reader;
use crate::store::Store;
use crate::vocab::Result;
use crate::vocab::VerifyReport;

/// Checks the store's read models into `report`. Damage is reported as
/// faults; only a failure to read the log itself is an error.
pub(crate) fn verify_read_models(store: &Store, reader: &Reader, report: &mut VerifyReport) -> Result<()> {
    let env = match ProjEnv::get(store) {
        Ok(Some(env)) => env,
        Ok(None) => return Ok(()),
        Err(e) => {
            report.fault("projections", None, None, e.to_string());
            return Ok(());
        }
    };
    if let Err(e) = walk(&env, store, reader, report) {
        report.fault("projections", None, None, format!("the walk stopped: {e}"));
    }
    Ok(())
}

fn walk(env: &ProjEnv, store: &Store, reader: &Reader, report: &mut VerifyReport) -> Result<()> {
    let durable = store.durable_head()?;
    let mut names = Vec::new();
    for (name, meta) in meta_entries(env)? {
        let area = format!("projections/{name}");
        report.read_models = report.read_models.saturating_add(1);
        if let Some(why) = env.stale.get(&name) {
            report.fault(&area, None, None, format!("not served: {why}"));
        }
        match meta {
            Ok(meta) => {
                if let Some(why) = meta_mismatch(reader, durable, &meta)? {
                    report.fault(&area, Some(meta.checkpoint), None, why);
                }
            }
            Err(e) => report.fault(&area, None, None, e.to_string()),
        }
        names.push(name);
    }
    for name in names {
        let area = format!("projections/{name}");
        let Some(slots) = env.slots(&name, false)? else {
            report.fault(&area, None, None, "its checkpoint entry is there, its document databases are not");
            continue;
        };
        let txn = env.env.read_txn()?;
        for db in slots {
            for item in db.iter(&txn)? {
                let (k, v) = item?;
                report.documents = report.documents.saturating_add(1);
                if let Err(why) = unseal(k, v) {
                    report.fault(
                        &area,
                        None,
                        None,
                        format!("document {:?}: {why}", String::from_utf8_lossy(k)),
                    );
                }
            }
        }
    }
    Ok(())
}
