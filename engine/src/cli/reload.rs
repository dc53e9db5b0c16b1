//! SIGHUP: the tenants file and the TLS certificates read again and handed
//! to the running engine, all or nothing (docs/decisions/0016-reload.md).

use tracing::{error, info};

use super::LOG;
use super::args::Args;
use super::plan::{load_music, read_tenants, tenant_count, tls_certs, xdp_config};
use super::sources::Sources;
use crate::io::{Engine, Reload};
use crate::proto::config::Config;

/// What a reload hands the engine, and how it is logged.
#[derive(Debug)]
pub struct Reloaded {
    pub reload: Reload,
    /// The tenants it serves: "3 tenants", "every domain".
    pub tenants_desc: String,
}

/// Re-reads the tenants file (if there is one) and the TLS certificates
/// (if `tls`: there is a TLS listener), and builds the engine's next
/// configuration from `current`. Any error leaves nothing half-read: the
/// caller keeps `current`.
pub fn reload_plan(args: &Args, sources: &impl Sources, current: &Config, tls: bool) -> Result<Reloaded, String> {
    let tenants = match &args.tenants {
        Some(path) => Some(read_tenants(args, path, sources)?),
        None => None,
    };
    let tls_certs = if tls {
        let certs = tls_certs(args, tenants.as_ref().map_or(&[][..], |t| &t.certs), sources)?;
        if certs.is_empty() {
            return Err("the TLS listener would have no certificate (no --tls-cert, no tenant tls_cert)".into());
        }
        Some(certs)
    } else {
        None
    };
    let mut cfg = current.clone();
    let mut xdp = None;
    let tenants_desc = match tenants {
        Some(t) => {
            xdp = xdp_config(args, &t.mode, t.datapath)?;
            let desc = tenant_count(&t.mode);
            cfg.defaults = t.defaults;
            cfg.tenants = t.mode;
            desc
        }
        None => tenant_count(&cfg.tenants),
    };
    cfg.music = load_music(args, &cfg, sources)?;
    Ok(Reloaded { reload: Reload { cfg, tls_certs, xdp }, tenants_desc })
}

/// SIGHUP: [`reload_plan`], handed to `engine`, counted and logged. Any
/// error leaves the running configuration as it is.
pub fn reload(args: &Args, sources: &impl Sources, engine: &mut Engine) {
    let tls = engine.tls_addr().is_some();
    if args.tenants.is_none() && !tls {
        info!(target: LOG, "SIGHUP: nothing to reload (no --tenants file and no TLS listener)");
        return;
    }
    let applied =
        reload_plan(args, sources, engine.config(), tls).and_then(|r| engine.reload(r.reload).map(|()| r.tenants_desc));
    match applied {
        Ok(desc) => {
            engine.count_reload(true);
            info!(target: LOG, tenants = %desc, tls_certificates = tls, "configuration reloaded");
        }
        Err(e) => {
            engine.count_reload(false);
            error!(target: LOG, error = %e, "reload failed; the running configuration stays");
        }
    }
}
