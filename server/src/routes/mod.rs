//! The REST API: one module per resource, each exporting `router()`, merged here together
//! with the generated OpenAPI document.

use axum::{routing::get, Json, Router};
use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};
use utoipa_axum::router::OpenApiRouter;

use crate::{error::ApiError, state::AppState};

pub mod auth;
pub mod friends;
pub mod groups;
pub mod health;
pub mod messages;
pub mod users;
pub mod voice;

#[derive(OpenApi)]
#[openapi(
    info(title = "Sohbet API", description = "Self-hostable voice and text chat."),
    modifiers(&BearerAuth),
    components(schemas(protocol::error::ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API router and its OpenAPI document, built from the same route list so the document
/// cannot miss a route.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(auth::router())
        .merge(users::router())
        .merge(friends::router())
        .merge(groups::router())
        .merge(messages::router())
        .merge(voice::router())
        .merge(crate::gateway::router())
        .split_for_parts()
}

pub fn router() -> Router<AppState> {
    let (api, doc) = api();
    let doc = std::sync::Arc::new(doc);
    api.route(
        "/api/openapi.json",
        get(move || async move { Json(doc.as_ref().clone()) }),
    )
    // After every route: it becomes the answer of each route to a method it lacks.
    .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
    .fallback(|| async { ApiError::NotFound("route") })
}
