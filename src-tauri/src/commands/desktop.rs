//! The desktop around the window: the tray's unread count.

use tauri::{AppHandle, Manager};

use crate::{error::CommandResult, tray};

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
