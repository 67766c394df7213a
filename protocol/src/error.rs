//! The error body: `{"error": {"code": "...", "message": "..."}}`.

use serde::{Deserialize, Serialize};

/// Every failed request answers with this body. `code` is stable and machine-readable;
/// `message` is for humans and may change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `validation_failed`, `unauthorized`.
    pub code: String,
    pub message: String,
    /// For `validation_failed`: the request field that was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
