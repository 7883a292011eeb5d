//! The error responses endpoints document, in sets: each is RFC 9457 problem+json.

use std::collections::BTreeMap;

use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

use crate::server::error::PROBLEM_JSON;

fn problems(list: &[(u16, &str)]) -> BTreeMap<String, RefOr<Response>> {
    list.iter()
        .map(|(status, description)| {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build();
            let response = ResponseBuilder::new()
                .description(*description)
                .content(PROBLEM_JSON, content)
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
}

/// Declares a set of problem responses for `utoipa::path(responses(...))`.
macro_rules! problem_set {
    ($(#[$doc:meta])* $name:ident: $(($status:literal, $description:expr)),+ $(,)?) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                problems(&[$(($status, $description)),+])
            }
        }
    };
}

const BAD_JSON: &str = "Malformed JSON";
const NO_TOKEN: &str = "No valid admin token";
const AUDITOR: &str = "The token's role may only read";

problem_set!(
    /// Errors of list endpoints.
    ListErrors: (400, "Unknown filter value or malformed cursor"), (401, NO_TOKEN),
    (422, "Limit out of range or cursor not from this API"),
);
problem_set!(
    /// Errors of reading one resource.
    GetErrors: (401, NO_TOKEN), (404, "No such resource"),
);
problem_set!(
    /// Errors of creating a resource.
    CreateErrors: (400, BAD_JSON), (401, NO_TOKEN), (403, AUDITOR),
    (409, "The id or another unique value is taken"), (413, "Body too large"),
    (415, "Body is not application/json"), (422, "Invalid fields or unknown references, each named"),
);
problem_set!(
    /// Errors of changing a resource with a body.
    ChangeErrors: (400, BAD_JSON), (401, NO_TOKEN), (403, AUDITOR), (404, "No such resource"),
    (409, "The change contradicts its state or a concurrent change"), (413, "Body too large"),
    (415, "Body is not application/json"), (422, "Invalid fields or unknown references, each named"),
);
problem_set!(
    /// Errors of an action without a body (lifecycle changes, revocations, deletions).
    ActionErrors: (400, "Malformed path or query"), (401, NO_TOKEN), (403, AUDITOR),
    (404, "No such resource"),
    (409, "Not allowed in the resource's current state, or still in use"),
);
problem_set!(
    /// Errors of reading a JSON body, for endpoints outside the admin API.
    JsonBodyErrors: (400, "Malformed JSON, path or query"), (413, "Body too large"),
    (415, "Body is not application/json"),
);
