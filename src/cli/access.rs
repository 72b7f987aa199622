//! Direct access to a stopped data directory, or through the server that holds it.

use anyhow::anyhow;

use super::client::ServerClient;
use crate::config::DataDir;
use crate::log::{LogError, SledEventLog};

pub enum LogAccess {
    Direct(SledEventLog),
    Server(ServerClient),
}

/// With `--server`, always the server. Otherwise the data directory if no process holds it,
/// else the server at the bind address; if none answers there, an error that says so.
pub fn open_log(data_dir: &DataDir, bind: &str, server: Option<&str>) -> anyhow::Result<LogAccess> {
    if let Some(server) = server {
        let client = ServerClient::new(server, super::client_token());
        client.is_humpback().map_err(|reason| anyhow!("no humpback server at {}: {reason}", client.base_url()))?;
        return Ok(LogAccess::Server(client));
    }
    if !data_dir.has_event_log() {
        return Err(anyhow!(
            "there is no event log in {} (start humpback there with `humpback serve --data-dir {}`, or pass --data-dir)",
            data_dir.root().display(),
            data_dir.root().display()
        ));
    }
    match SledEventLog::open(&data_dir.events_dir()) {
        Ok(log) => Ok(LogAccess::Direct(log)),
        Err(LogError::Locked { path }) => {
            let client = ServerClient::new(bind, super::client_token());
            match client.is_humpback() {
                Ok(()) => Ok(LogAccess::Server(client)),
                Err(reason) => Err(anyhow!(
                    "the event log at {} is locked by another process (a running humpback server?), and no humpback \
                     server answered at {}: {reason}. Pass --server URL to read through the server that holds it, \
                     or stop that process",
                    path.display(),
                    client.base_url()
                )),
            }
        }
        Err(error) => Err(error.into()),
    }
}
