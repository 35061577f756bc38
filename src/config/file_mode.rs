//! A secret file that other users can read is a leak waiting to happen, but refusing it would
//! break deployments that protect the file otherwise (a private directory, a container with a
//! single user): so it is accepted with a warning that names the field and the path.

use std::path::Path;

/// The warning for `path` (configured as `field`) if group or others may read or write it.
#[cfg(unix)]
pub(super) fn exposed(field: &str, path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{field}: {} is accessible to group or others (mode {mode:03o}); restrict it, e.g. chmod 600",
            path.display()
        )
    })
}

#[cfg(not(unix))]
pub(super) fn exposed(_field: &str, _path: &Path) -> Option<String> {
    None
}
