//! The desktop around the window: the tray's unread count, which conversations notify and
//! the drafts kept across restarts.

use protocol::{users::UserStatus, GroupId};
use serde::Serialize;
use tauri::{AppHandle, Manager, State};

use crate::{error::CommandResult, state::AppState, store::NotificationLevel, tray};

/// Shows the unread total in the window title, and my status with it on the tray icon's
/// tooltip (`status` is `None` while logged out; `connected` false while offline).
#[tauri::command]
#[specta::specta]
pub fn set_unread(
    app: AppHandle,
    unread: u32,
    status: Option<UserStatus>,
    connected: bool,
) -> CommandResult<()> {
    let title = if unread == 0 {
        "Sohbet".to_owned()
    } else {
        format!("Sohbet ({unread})")
    };
    if let Some(window) = app.get_webview_window("main") {
        let _ = window.set_title(&title);
    }
    tray::set_tooltip(&app, &tray_text(unread, status, connected));
    Ok(())
}

/// The tray's tooltip: who I appear as and what is unread.
fn tray_text(unread: u32, status: Option<UserStatus>, connected: bool) -> String {
    let status = match status {
        None => "logged out",
        Some(_) if !connected => "offline, reconnecting",
        Some(UserStatus::Online) => "online",
        Some(UserStatus::Idle) => "idle",
        Some(UserStatus::Dnd) => "do not disturb",
        Some(UserStatus::Invisible) => "invisible",
    };
    match unread {
        0 => format!("Sohbet — {status}"),
        n => format!("Sohbet — {status} · {n} unread"),
    }
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

/// A conversation's unsent text.
#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct Draft {
    pub group_id: GroupId,
    pub text: String,
}

/// The drafts kept by this profile, restored into the composers at start.
#[tauri::command]
#[specta::specta]
pub fn drafts(state: State<'_, AppState>) -> Vec<Draft> {
    state
        .profile
        .load_drafts()
        .into_iter()
        .map(|(group_id, text)| Draft { group_id, text })
        .collect()
}

/// Keeps `text` as the draft of a conversation (blank text drops it). Fails with
/// `validation_failed` on the field `text` past [`crate::store::MAX_DRAFT_CHARS`].
#[tauri::command]
#[specta::specta]
pub fn set_draft(state: State<'_, AppState>, group_id: GroupId, text: String) -> CommandResult<()> {
    state.profile.set_draft(group_id, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tray_says_my_status_and_what_is_unread() {
        assert_eq!(tray_text(0, None, false), "Sohbet — logged out");
        assert_eq!(
            tray_text(3, Some(UserStatus::Dnd), true),
            "Sohbet — do not disturb · 3 unread"
        );
        assert_eq!(
            tray_text(0, Some(UserStatus::Online), false),
            "Sohbet — offline, reconnecting"
        );
    }
}
