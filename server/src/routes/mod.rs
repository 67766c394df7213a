//! The REST API: one module per resource, each exporting `router()`, merged here together
//! with the generated OpenAPI document.

use axum::{routing::get, Json, Router};
use utoipa::{
    openapi::{
        path::Operation,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
        Content, Ref, RefOr, ResponseBuilder,
    },
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
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(auth::router())
        .merge(users::router())
        .merge(friends::router())
        .merge(groups::router())
        .merge(messages::router())
        .merge(voice::router())
        .merge(crate::gateway::router())
        .split_for_parts();
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            document_common_errors(operation);
        }
    }
    (router, doc)
}

/// Adds to an operation the error answers that come from its shape rather than its
/// handler, unless it documents them itself: a session token → 401; path or query
/// parameters → 400; a JSON body → 400, 413, 415, 422; a session or a body (the stores are
/// reached) → 503. Every one is an `ErrorBody`.
fn document_common_errors(operation: &mut Operation) {
    let secured = operation.security.is_some();
    let has_parameters = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let has_body = operation.request_body.is_some();
    let mut errors: Vec<(&str, &str)> = Vec::new();
    if secured {
        errors.push(("401", "`unauthorized`: no valid session token"));
    }
    if has_parameters {
        errors.push((
            "400",
            "`invalid_parameter`: a path or query parameter of the wrong form",
        ));
    }
    if has_body {
        errors.extend([
            ("400", "`malformed_json`: the body is not JSON"),
            ("413", "`payload_too_large`"),
            (
                "415",
                "`unsupported_media_type`: the body is not declared as JSON",
            ),
            (
                "422",
                "`invalid_body` or `validation_failed`: JSON of the wrong shape or value",
            ),
        ]);
    }
    if secured || has_body {
        errors.push(("503", "`unavailable`: a backing store is down"));
    }
    for (status, description) in errors {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                        )
                        .build(),
                )
            });
    }
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
