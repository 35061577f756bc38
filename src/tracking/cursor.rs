//! Opaque tokens handed to callers: change cursors and list page tokens.

use super::TrackingError;

/// A change cursor is the change's position in the feed. Positions are assigned in commit
/// order by the store, so "after N" is the same set of changes on every replica.
pub(super) fn encode_cursor(position: i64) -> String {
    format!("c{position}")
}

pub(super) fn decode_cursor(cursor: &str) -> Result<i64, TrackingError> {
    cursor
        .strip_prefix('c')
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .ok_or(TrackingError::InvalidCursor)
}

/// Where the previous page stopped: uploads are listed by (`issued_at`, `upload_id`) descending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PageKey {
    pub issued_at: i64,
    pub upload_id: String,
}

pub(super) fn encode_page_token(key: &PageKey) -> String {
    format!("{}.{}", key.issued_at, key.upload_id)
}

pub(super) fn decode_page_token(token: &str) -> Result<PageKey, TrackingError> {
    let (issued_at, upload_id) = token
        .split_once('.')
        .ok_or(TrackingError::InvalidPageToken)?;
    let issued_at = issued_at
        .parse()
        .map_err(|_| TrackingError::InvalidPageToken)?;
    super::UploadId::parse(upload_id).map_err(|_| TrackingError::InvalidPageToken)?;
    Ok(PageKey {
        issued_at,
        upload_id: upload_id.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        assert_eq!(decode_cursor(&encode_cursor(42)), Ok(42));
        for bad in ["", "42", "c", "c-1", "cx", "c1.5"] {
            assert_eq!(
                decode_cursor(bad),
                Err(TrackingError::InvalidCursor),
                "{bad:?}"
            );
        }
        let key = PageKey {
            issued_at: 1_700_000_000,
            upload_id: "up_abc".into(),
        };
        assert_eq!(decode_page_token(&encode_page_token(&key)), Ok(key));
        for bad in ["", "x.up", "1.", "1.a/b", "1"] {
            assert_eq!(
                decode_page_token(bad),
                Err(TrackingError::InvalidPageToken),
                "{bad:?}"
            );
        }
    }
}
