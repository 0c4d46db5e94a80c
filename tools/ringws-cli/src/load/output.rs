//! Results files written whole or not at all.
//!
//! A results file (`ringws load --json` and `--hist-out`, `ringws bench
//! --json`) is written to a temporary file beside it and renamed over it
//! once complete, so a run that fails, is interrupted or is killed leaves
//! the previous file as it was, and a reader never sees half a report. The
//! file is only checked before the run ([`check_replaceable`]), never
//! created or truncated.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The file `path` stands for: a link's target, so that the link stays a
/// link, as when the file is written in place.
fn destination(path: &Path) -> PathBuf {
    if path.is_symlink() {
        if let Ok(target) = std::fs::canonicalize(path) {
            return target;
        }
    }
    path.to_owned()
}

/// The file the contents of `destination` are written to before they
/// replace it: beside it (one file system, so the rename is atomic),
/// hidden, named for this process.
fn temp_beside(destination: &Path) -> PathBuf {
    let name = destination.file_name().unwrap_or(destination.as_os_str());
    let mut temp = OsString::from(".");
    temp.push(name);
    temp.push(format!(".{}.tmp", std::process::id()));
    destination.with_file_name(temp)
}

/// Creates the temporary file beside `destination`, never one that exists
/// (it is not ours), naming it in the error.
fn create_temp(destination: &Path) -> io::Result<(PathBuf, File)> {
    if destination.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "it is a directory",
        ));
    }
    let temp = temp_beside(destination);
    match File::options().write(true).create_new(true).open(&temp) {
        Ok(file) => Ok((temp, file)),
        Err(error) => Err(io::Error::new(
            error.kind(),
            format!("cannot create {}: {error}", temp.display()),
        )),
    }
}

/// Checks that complete contents can later replace `path` (the temporary
/// file beside it can be created), without touching `path`.
pub fn check_replaceable(path: &Path) -> io::Result<()> {
    let (temp, file) = create_temp(&destination(path))?;
    drop(file);
    std::fs::remove_file(temp)
}

/// Replaces `path` with `contents`, whole: written to the temporary file
/// beside it, which takes the permissions of the file it replaces and is
/// renamed over it once complete. On failure `path` is as it was and the
/// temporary file is gone.
pub fn replace_whole(path: &Path, contents: &[u8]) -> io::Result<()> {
    let destination = destination(path);
    let (temp, mut file) = create_temp(&destination)?;
    let written = (|| {
        if let Ok(previous) = std::fs::metadata(&destination) {
            file.set_permissions(previous.permissions())?;
        }
        file.write_all(contents)?;
        drop(file);
        std::fs::rename(&temp, &destination)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory for one test.
    fn test_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ringws-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entries(dir: &Path) -> Vec<OsString> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_report_replaces_the_file_whole_and_leaves_nothing_beside_it() {
        let dir = test_dir("replace-whole");
        let path = dir.join("report.json");
        std::fs::write(&path, "earlier report\n").unwrap();
        check_replaceable(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "earlier report\n");
        replace_whole(&path, b"new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        // A file that cannot be replaced is named, and left as it was.
        let blocker = dir.join("blocked");
        std::fs::create_dir_all(blocker.join("inside")).unwrap();
        assert!(check_replaceable(&blocker).is_err());
        let error = replace_whole(&blocker, b"{}").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::IsADirectory);
        let target = blocker.to_str().unwrap();
        let error = crate::load::report::write_json(target, &1).unwrap_err();
        assert!(error.starts_with(target), "{error}");
        assert!(blocker.join("inside").is_dir());
        assert_eq!(entries(&dir), ["blocked", "report.json"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Written in place, a file kept its permissions and a link stayed a
    /// link to it; replaced whole, they still do.
    #[test]
    fn a_replaced_file_keeps_its_permissions_and_links_to_it_stay_links() {
        use std::os::unix::fs::PermissionsExt;

        let dir = test_dir("replace-link");
        let target = dir.join("kept.hlog");
        std::fs::write(&target, "earlier\n").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.join("latest.hlog");
        std::os::unix::fs::symlink("kept.hlog", &link).unwrap();
        check_replaceable(&link).unwrap();
        replace_whole(&link, b"new\n").unwrap();
        assert!(link.is_symlink());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new\n");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        assert_eq!(entries(&dir), ["kept.hlog", "latest.hlog"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A stale file where the temporary file would go is not ours: it is
    /// named and left alone, and the target is untouched.
    #[test]
    fn a_file_in_the_way_of_the_temporary_file_is_left_alone() {
        let dir = test_dir("replace-stale");
        let path = dir.join("report.json");
        std::fs::write(&path, "earlier\n").unwrap();
        let temp = temp_beside(&path);
        std::fs::write(&temp, "someone else's\n").unwrap();
        let error = replace_whole(&path, b"new\n").unwrap_err();
        assert!(error.to_string().contains(".tmp"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "earlier\n");
        assert_eq!(std::fs::read_to_string(&temp).unwrap(), "someone else's\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
