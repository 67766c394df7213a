//! The desktop around the window: the tray's unread count and which conversations notify.

use protocol::GroupId;
use serde::Serialize;
use tauri::{AppHandle, Manager, State};

use crate::{error::CommandResult, state::AppState, store::NotificationLevel, tray};

/// Shows the unread total on the tray icon's tooltip and in the window title.
#[tauri::command]
#[specta::specta]
pub fn set_unread(app: AppHandle, unread: u32) -> CommandResult<()> {
    let title = if unread == 0 {
        "Sohbet".to_owned()
    } else {
        format!("Sohbet ({unread})")
    };
    if let Some(window) = app.get_webview_window("main") {
        let _ = window.set_title(&title);
    }
    tray::set_tooltip(&app, &title);
    Ok(())
}

/// One conversation's notification level.
#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct ConversationNotifications {
    pub group_id: GroupId,
    pub level: NotificationLevel,
}

/// The conversations whose notifications are not `all`. Kept by this profile only: other
/// devices choose their own.
#[tauri::command]
#[specta::specta]
pub fn notification_levels(state: State<'_, AppState>) -> Vec<ConversationNotifications> {
    state
        .profile
        .load_config()
        .notifications
        .into_iter()
        .map(|(group_id, level)| ConversationNotifications { group_id, level })
        .collect()
}

#[tauri::command]
#[specta::specta]
pub fn set_notification_level(
    state: State<'_, AppState>,
    group_id: GroupId,
    level: NotificationLevel,
) -> CommandResult<()> {
    state.profile.update_config(|c| {
        if level == NotificationLevel::All {
            c.notifications.remove(&group_id);
        } else {
            c.notifications.insert(group_id, level);
        }
    })?;
    Ok(())
}
