//! Logging: human-readable by default, JSON with `MAILGATE_LOG_FORMAT=json`; the level
//! from `MAILGATE_LOG` (or `RUST_LOG`), default `info`.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber once; later calls do nothing. A `MAILGATE_LOG` that is
/// not a valid filter stops the start with the setting named (it used to be ignored).
pub fn init(format: LogFormat) -> anyhow::Result<()> {
    let filter = match std::env::var("MAILGATE_LOG") {
        Ok(v) => {
            EnvFilter::try_new(&v).map_err(|e| anyhow::anyhow!("MAILGATE_LOG: {e} (e.g. `info,mailgate=debug`)"))?
        }
        Err(_) => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}
