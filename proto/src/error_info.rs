//! Encoding of [`v1::ErrorInfo`](crate::v1::ErrorInfo) in gRPC status details, shared by the
//! server (which attaches it) and the client (which reads it to decide what to do next).

use prost::Message;

use crate::v1::ErrorInfo;
use crate::Reason;

/// Builds a status whose details carry `info`.
pub fn status_with_info(code: tonic::Code, message: impl Into<String>, info: &ErrorInfo) -> tonic::Status {
    tonic::Status::with_details(code, message, info.encode_to_vec().into())
}

/// Reads the [`ErrorInfo`] from a status, if the server attached one.
pub fn info_of(status: &tonic::Status) -> Option<ErrorInfo> {
    if status.details().is_empty() {
        return None;
    }
    ErrorInfo::decode(status.details()).ok()
}

impl ErrorInfo {
    /// The reason as a [`Reason`]; `None` for one this build does not know (a newer server).
    pub fn known_reason(&self) -> Option<Reason> {
        Reason::from_wire(&self.reason)
    }
}
