//! Every command the UI can invoke, registered in one place. Each is a thin call into
//! `sohbet-client`; the list here is also what the TypeScript bindings are generated from.

pub mod auth;
pub mod calls;
pub mod chat;
pub mod desktop;
pub mod social;

use tauri_specta::{collect_commands, Builder, ErrorHandlingMode};

/// The commands, for the invoke handler and for the generated bindings.
pub fn builder() -> Builder<tauri::Wry> {
    Builder::<tauri::Wry>::new()
        .commands(collect_commands![
            auth::startup,
            auth::set_server,
            auth::forget_server,
            auth::register,
            auth::log_in,
            auth::log_out,
            auth::subscribe,
            auth::sessions,
            auth::revoke_session,
            auth::revoke_other_sessions,
            social::me,
            social::update_me,
            social::regenerate_friend_code,
            social::friends,
            social::friend_requests,
            social::send_friend_request,
            social::accept_friend_request,
            social::decline_friend_request,
            social::cancel_friend_request,
            social::remove_friend,
            social::blocked,
            social::block,
            social::unblock,
            chat::groups,
            chat::group,
            chat::create_group,
            chat::update_group,
            chat::delete_group,
            chat::open_dm,
            chat::add_member,
            chat::remove_member,
            chat::leave_group,
            chat::change_role,
            chat::transfer_ownership,
            chat::history,
            chat::send_message,
            chat::edit_message,
            chat::delete_message,
            chat::mark_read,
            chat::receipts,
            chat::typing,
            desktop::set_unread,
            desktop::notification_levels,
            desktop::set_notification_level,
            desktop::drafts,
            desktop::set_draft,
            calls::join_call,
            calls::leave_call,
            calls::decline_call,
            calls::set_muted,
            calls::set_deafened,
            calls::push_to_talk,
            calls::set_volume,
            calls::missed_calls,
            calls::audio_devices,
            calls::audio_settings,
            calls::set_audio_settings,
            calls::mic_test,
        ])
        // One TypeScript type per Rust type: the wire shapes are the same both ways.
        .disable_serde_phases()
        // A failed command rejects its promise with the `CommandError`.
        .error_handling(ErrorHandlingMode::Throw)
        // Ids are PostgreSQL bigints, far below 2^53: exact as JavaScript numbers.
        .dangerously_cast_bigints_to_number()
}
