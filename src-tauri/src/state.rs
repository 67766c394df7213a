//! The app's state, held by Tauri (`manage`): the profile, the REST client of the current
//! session, its gateway connection and the call in progress.

use std::sync::Arc;

use sohbet_client::{
    calls::CallHandle,
    gateway::{self, GatewayHandle, GatewayOptions},
    Client,
};
use tauri::ipc::Channel;
use tokio::sync::{watch, Mutex};

use crate::{
    error::{CommandError, CommandResult},
    events::{self, AppEvent},
    store::Profile,
};

/// A logged-in session: its client and live gateway connection.
pub struct Session {
    pub client: Client,
    pub gateway: GatewayHandle,
}

/// The call I am in. One at a time: joining another leaves this one.
pub struct ActiveCall {
    /// Tells this call from a later one when its events end.
    pub id: u64,
    pub handle: CallHandle,
}

pub struct AppState {
    pub profile: Profile,
    /// The server chosen on the first-run screen (no session yet).
    pub server: Mutex<Option<Client>>,
    pub session: Mutex<Option<Arc<Session>>>,
    pub call: Mutex<Option<ActiveCall>>,
    subscriber: watch::Sender<Option<Channel<AppEvent>>>,
}

impl AppState {
    /// `default_server` stands in for a profile that has not chosen one yet.
    pub fn new(profile: Profile, default_server: Option<String>) -> Self {
        let server = profile
            .load_config()
            .server
            .or(default_server)
            .and_then(|base| Client::new(base).ok());
        Self {
            profile,
            server: Mutex::new(server),
            session: Mutex::new(None),
            call: Mutex::new(None),
            subscriber: watch::Sender::new(None),
        }
    }

    /// The client of the chosen server, without a session.
    pub async fn server(&self) -> CommandResult<Client> {
        self.server
            .lock()
            .await
            .clone()
            .ok_or_else(|| CommandError::new("no_server", "Choose a server first."))
    }

    /// The current session's client.
    pub async fn client(&self) -> CommandResult<Client> {
        Ok(self.session().await?.client.clone())
    }

    pub async fn session(&self) -> CommandResult<Arc<Session>> {
        self.session
            .lock()
            .await
            .clone()
            .ok_or_else(CommandError::not_logged_in)
    }

    /// Makes `client` (holding a token) the session and connects its gateway.
    pub async fn start_session(&self, client: Client) {
        let token = client.token().unwrap_or_default().to_owned();
        let options = GatewayOptions {
            tls: client.tls().clone(),
            ..GatewayOptions::default()
        };
        let (handle, rx) = gateway::connect(client.gateway_url(), token, options);
        tokio::spawn(events::forward(
            rx,
            self.subscriber.subscribe(),
            AppEvent::from_gateway,
        ));
        let old = self.session.lock().await.replace(Arc::new(Session {
            client,
            gateway: handle,
        }));
        // Dropping the old handle closes its connection and ends its forwarding task.
        drop(old);
    }

    /// Ends the session, and with it any call.
    pub async fn end_session(&self) -> Option<Arc<Session>> {
        if let Some(call) = self.call.lock().await.take() {
            call.handle.leave().await;
        }
        self.session.lock().await.take()
    }

    /// The current call's handle, through `f`.
    pub async fn with_call<T>(
        &self,
        f: impl FnOnce(&CallHandle) -> Result<T, sohbet_client::ClientError>,
    ) -> CommandResult<T> {
        let call = self.call.lock().await;
        let call = call
            .as_ref()
            .ok_or_else(|| CommandError::new("not_in_call", "You are not in a call."))?;
        Ok(f(&call.handle)?)
    }

    /// A receiver of the UI's event channel, for a task that forwards events to it.
    pub fn subscriber(&self) -> events::Subscriber {
        self.subscriber.subscribe()
    }

    /// The UI's event channel from now on.
    pub fn subscribe(&self, channel: Channel<AppEvent>) {
        self.subscriber.send_replace(Some(channel));
    }
}
