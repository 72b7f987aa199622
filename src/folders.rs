//! Folder names as metadata (a recording's folder, a folder filter), pure: below every caller
//! (HTTP handlers, clustering and search requests, the CLI).

/// A folder name as metadata: slashes normalised, no empty, `.` or `..` parts.
pub fn clean_folder(text: &str) -> String {
    text.replace('\\', "/")
        .split('/')
        .map(str::trim)
        .filter(|part| !part.is_empty() && *part != "." && *part != "..")
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_keeps_its_names_and_loses_empty_dot_and_dot_dot_parts() {
        assert_eq!(clean_folder(" maui\\2024/../ ./ north/"), "maui/2024/north");
        assert_eq!(clean_folder(""), "");
    }
}
