//! My profile, friends, friend requests and blocks.

use protocol::{
    friends::{Friend, FriendRequestBody, FriendRequestOutcome, FriendRequests},
    users::{UpdateMeRequest, User},
    UserId,
};
use tauri::State;

use crate::{error::CommandResult, state::AppState};

#[tauri::command]
#[specta::specta]
pub async fn me(state: State<'_, AppState>) -> CommandResult<User> {
    Ok(state.client().await?.me().await?)
}

#[tauri::command]
#[specta::specta]
pub async fn update_me(
    state: State<'_, AppState>,
    request: UpdateMeRequest,
) -> CommandResult<User> {
    Ok(state.client().await?.update_me(&request).await?)
}

/// Draws a new friend code (the old one stops working).
#[tauri::command]
#[specta::specta]
pub async fn regenerate_friend_code(state: State<'_, AppState>) -> CommandResult<String> {
    Ok(state
        .client()
        .await?
        .regenerate_friend_code()
        .await?
        .friend_code)
}

#[tauri::command]
#[specta::specta]
pub async fn friends(state: State<'_, AppState>) -> CommandResult<Vec<Friend>> {
    Ok(state.client().await?.friends().await?)
}

#[tauri::command]
#[specta::specta]
pub async fn friend_requests(state: State<'_, AppState>) -> CommandResult<FriendRequests> {
    Ok(state.client().await?.friend_requests().await?)
}

#[tauri::command]
#[specta::specta]
pub async fn send_friend_request(
    state: State<'_, AppState>,
    request: FriendRequestBody,
) -> CommandResult<FriendRequestOutcome> {
    Ok(state.client().await?.send_friend_request(&request).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn accept_friend_request(
    state: State<'_, AppState>,
    user_id: UserId,
) -> CommandResult<Friend> {
    Ok(state.client().await?.accept_friend_request(user_id).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn decline_friend_request(
    state: State<'_, AppState>,
    user_id: UserId,
) -> CommandResult<()> {
    Ok(state
        .client()
        .await?
        .decline_friend_request(user_id)
        .await?)
}

#[tauri::command]
#[specta::specta]
pub async fn cancel_friend_request(
    state: State<'_, AppState>,
    user_id: UserId,
) -> CommandResult<()> {
    Ok(state.client().await?.cancel_friend_request(user_id).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn remove_friend(state: State<'_, AppState>, user_id: UserId) -> CommandResult<()> {
    Ok(state.client().await?.remove_friend(user_id).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn blocked(state: State<'_, AppState>) -> CommandResult<Vec<Friend>> {
    Ok(state.client().await?.blocked().await?)
}

#[tauri::command]
#[specta::specta]
pub async fn block(state: State<'_, AppState>, user_id: UserId) -> CommandResult<()> {
    Ok(state.client().await?.block(user_id).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn unblock(state: State<'_, AppState>, user_id: UserId) -> CommandResult<()> {
    Ok(state.client().await?.unblock(user_id).await?)
}
