//! Cursor pagination: every list is ordered by a unique key and continues after the last key
//! seen, so rows inserted meanwhile never shift or repeat a page (unlike offsets).

use super::Invalid;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Rows per page unless asked otherwise.
pub const DEFAULT_LIMIT: u32 = 50;
/// Most rows per page.
pub const MAX_LIMIT: u32 = 200;

/// Query parameters shared by every list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
    /// Rows per page, 1 to 200 (default 50).
    pub limit: Option<u32>,
}

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Continue after this key.
    pub after: Option<String>,
    /// Rows wanted.
    pub limit: u32,
}

impl PageRequest {
    /// The first page of `limit` rows.
    pub fn first(limit: u32) -> Self {
        Self { after: None, limit }
    }

    /// One more than the page size: the extra row tells whether a next page exists.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

impl TryFrom<&PageQuery> for PageRequest {
    type Error = Invalid;

    fn try_from(query: &PageQuery) -> Result<Self, Invalid> {
        let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Invalid::field("limit", "must be between 1 and 200"));
        }
        let after = match &query.cursor {
            None => None,
            Some(cursor) => Some(
                URL_SAFE_NO_PAD
                    .decode(cursor)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .filter(|key| key.len() <= 256)
                    .ok_or_else(|| Invalid::field("cursor", "is not a cursor this API returned"))?,
            ),
        };
        Ok(Self { after, limit })
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Paged<T> {
    /// The rows, in key order.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T> Paged<T> {
    /// Cuts a fetch of up to `limit + 1` rows into a page and the cursor after it.
    pub fn from_rows(mut rows: Vec<T>, page: &PageRequest, key: impl Fn(&T) -> String) -> Self {
        let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| URL_SAFE_NO_PAD.encode(key(last)))
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }

    /// The same page with each row transformed.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Paged<U> {
        Paged {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_fetch_yields_a_cursor_that_continues_after_the_last_row() {
        let page = PageRequest::first(2);
        let paged = Paged::from_rows(vec!["a", "b", "c"], &page, |s| s.to_string());
        assert_eq!(paged.items, ["a", "b"]);
        let query = PageQuery {
            cursor: paged.next_cursor,
            limit: Some(2),
        };
        assert_eq!(
            PageRequest::try_from(&query).unwrap().after.as_deref(),
            Some("b")
        );
        let last = Paged::from_rows(vec!["c"], &page, |s| s.to_string());
        assert_eq!(last.next_cursor, None);
    }

    #[test]
    fn bad_limits_and_cursors_are_refused() {
        for (cursor, limit) in [
            (None, Some(0)),
            (None, Some(201)),
            (Some("***".to_owned()), None),
        ] {
            let query = PageQuery { cursor, limit };
            assert!(matches!(PageRequest::try_from(&query), Err(Invalid(_))));
        }
    }
}
