//! Groups and DMs, members, messages, read status and typing.

use protocol::{
    groups::{
        CreateGroupRequest, Group, GroupDetail, GroupListItem, Member, Role, UpdateGroupRequest,
    },
    messages::{
        HistoryQuery, MarkReadRequest, Message, MessagePage, ReadState, Receipt, SendMessageRequest,
    },
    GroupId, MessageId, UserId,
};
use tauri::State;

use crate::{error::CommandResult, state::AppState};

/// My groups and DMs, latest activity first.
#[tauri::command]
#[specta::specta]
pub async fn groups(state: State<'_, AppState>) -> CommandResult<Vec<GroupListItem>> {
    Ok(state.client().await?.groups().await?)
}

#[tauri::command]
#[specta::specta]
pub async fn group(state: State<'_, AppState>, group_id: GroupId) -> CommandResult<GroupDetail> {
    Ok(state.client().await?.group(group_id).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn create_group(
    state: State<'_, AppState>,
    request: CreateGroupRequest,
) -> CommandResult<GroupDetail> {
    Ok(state.client().await?.create_group(&request).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn update_group(
    state: State<'_, AppState>,
    group_id: GroupId,
    request: UpdateGroupRequest,
) -> CommandResult<Group> {
    Ok(state
        .client()
        .await?
        .update_group(group_id, &request)
        .await?)
}

#[tauri::command]
#[specta::specta]
pub async fn delete_group(state: State<'_, AppState>, group_id: GroupId) -> CommandResult<()> {
    Ok(state.client().await?.delete_group(group_id).await?)
}

/// Gets or creates the DM with a friend.
#[tauri::command]
#[specta::specta]
pub async fn open_dm(state: State<'_, AppState>, user_id: UserId) -> CommandResult<GroupDetail> {
    Ok(state.client().await?.open_dm(user_id).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn add_member(
    state: State<'_, AppState>,
    group_id: GroupId,
    user_id: UserId,
) -> CommandResult<Member> {
    Ok(state.client().await?.add_member(group_id, user_id).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn remove_member(
    state: State<'_, AppState>,
    group_id: GroupId,
    user_id: UserId,
) -> CommandResult<()> {
    Ok(state
        .client()
        .await?
        .remove_member(group_id, user_id)
        .await?)
}

#[tauri::command]
#[specta::specta]
pub async fn leave_group(state: State<'_, AppState>, group_id: GroupId) -> CommandResult<()> {
    Ok(state.client().await?.leave_group(group_id).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn change_role(
    state: State<'_, AppState>,
    group_id: GroupId,
    user_id: UserId,
    role: Role,
) -> CommandResult<Member> {
    Ok(state
        .client()
        .await?
        .change_role(group_id, user_id, role)
        .await?)
}

#[tauri::command]
#[specta::specta]
pub async fn transfer_ownership(
    state: State<'_, AppState>,
    group_id: GroupId,
    user_id: UserId,
) -> CommandResult<GroupDetail> {
    Ok(state
        .client()
        .await?
        .transfer_ownership(group_id, user_id)
        .await?)
}

#[tauri::command]
#[specta::specta]
pub async fn history(
    state: State<'_, AppState>,
    group_id: GroupId,
    query: HistoryQuery,
) -> CommandResult<MessagePage> {
    Ok(state.client().await?.history(group_id, &query).await?)
}

/// Sends a message; the UI's `nonce` makes a retry after a lost answer safe (the server
/// returns the first message instead of storing a second).
#[tauri::command]
#[specta::specta]
pub async fn send_message(
    state: State<'_, AppState>,
    group_id: GroupId,
    request: SendMessageRequest,
) -> CommandResult<Message> {
    Ok(state
        .client()
        .await?
        .send_message(group_id, &request)
        .await?)
}

#[tauri::command]
#[specta::specta]
pub async fn edit_message(
    state: State<'_, AppState>,
    group_id: GroupId,
    message_id: MessageId,
    content: String,
) -> CommandResult<Message> {
    Ok(state
        .client()
        .await?
        .edit_message(group_id, message_id, &content)
        .await?)
}

#[tauri::command]
#[specta::specta]
pub async fn delete_message(
    state: State<'_, AppState>,
    group_id: GroupId,
    message_id: MessageId,
) -> CommandResult<()> {
    Ok(state
        .client()
        .await?
        .delete_message(group_id, message_id)
        .await?)
}

/// Marks everything up to and including `message_id` read.
#[tauri::command]
#[specta::specta]
pub async fn mark_read(
    state: State<'_, AppState>,
    group_id: GroupId,
    message_id: MessageId,
) -> CommandResult<ReadState> {
    Ok(state
        .client()
        .await?
        .mark_read(group_id, &MarkReadRequest { message_id })
        .await?)
}

#[tauri::command]
#[specta::specta]
pub async fn receipts(
    state: State<'_, AppState>,
    group_id: GroupId,
    message_id: MessageId,
) -> CommandResult<Vec<Receipt>> {
    Ok(state.client().await?.receipts(group_id, message_id).await?)
}

/// Tells the group I am typing (best effort; the UI repeats it while typing).
#[tauri::command]
#[specta::specta]
pub async fn typing(state: State<'_, AppState>, group_id: GroupId) -> CommandResult<()> {
    state.session().await?.gateway.typing(group_id);
    Ok(())
}
