//! What `--storage` names, and the shared AWS credentials file (pure parsing).

use std::path::PathBuf;

use super::StorageError;

/// A parsed `--storage` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageSpec {
    /// A folder on this machine (a path, or a `file://` URL).
    Folder(PathBuf),
    /// An object store URL: `s3://bucket[/prefix]`, `gs://bucket[/prefix]`, `az://container[/prefix]`.
    Bucket(String),
}

/// The URL schemes of buckets humpback opens.
pub const BUCKET_SCHEMES: [&str; 3] = ["s3", "gs", "az"];

/// Whether `value` is an object URL (`s3://…`, `gs://…`, `az://…`) rather than a key or path.
pub fn is_object_url(value: &str) -> bool {
    BUCKET_SCHEMES.iter().any(|scheme| value.strip_prefix(scheme).is_some_and(|rest| rest.starts_with("://")))
}

/// Whether `value` names a recording registered where it sits: an object URL, or a
/// `file:///absolute/path` with no `..` part (a shared filesystem every worker mounts).
pub fn is_in_place_location(value: &str) -> bool {
    if value.chars().any(char::is_control) {
        return false;
    }
    if is_object_url(value) {
        return true;
    }
    value.strip_prefix("file://").is_some_and(|path| path.starts_with('/') && !path.split('/').any(|part| part == ".."))
}

/// Parses a `--storage` value. A bucket URL is normalised to `scheme://bucket/prefix` (no
/// trailing slash).
pub fn parse_storage_spec(spec: &str) -> Result<StorageSpec, StorageError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(StorageError::BadSpec("the storage is empty: give a folder or a bucket URL".into()));
    }
    if let Some(path) = spec.strip_prefix("file://") {
        return Ok(StorageSpec::Folder(PathBuf::from(path)));
    }
    if is_object_url(spec) {
        let (scheme, rest) = spec.split_once("://").unwrap_or((spec, ""));
        let rest = rest.trim_end_matches('/');
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StorageError::BadSpec(format!("{spec} names no bucket (write {scheme}://BUCKET/PREFIX)")));
        }
        if prefix.split('/').any(|part| part == "." || part == "..") || prefix.contains("//") {
            return Err(StorageError::BadSpec(format!("{spec}: the prefix has an empty, . or .. part")));
        }
        return Ok(StorageSpec::Bucket(if prefix.is_empty() {
            format!("{scheme}://{bucket}")
        } else {
            format!("{scheme}://{bucket}/{prefix}")
        }));
    }
    if let Some((scheme, _)) = spec.split_once("://") {
        return Err(StorageError::BadSpec(format!(
            "{spec}: storage URLs of scheme {scheme:?} are not supported (a folder path, file://, s3://, gs:// or az://)"
        )));
    }
    Ok(StorageSpec::Folder(PathBuf::from(spec)))
}

/// Splits an object URL into its scheme and bucket (`s3://b/x/y` -> `s3://b`) and the key
/// inside it (`x/y`).
pub fn split_object_url(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (format!("{scheme}://{bucket}"), key.to_string()))
}

/// Keys read from an AWS shared credentials or config file for one profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsProfile {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
}

/// Reads `profile` from the text of `~/.aws/credentials` (`[name]`) or `~/.aws/config`
/// (`[profile name]`, or `[default]`). Unknown keys and other profiles are ignored.
pub fn parse_aws_profile(text: &str, profile: &str) -> AwsProfile {
    let mut found = AwsProfile::default();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
            let section = section.trim();
            let name = section.strip_prefix("profile ").map(str::trim).unwrap_or(section);
            inside = name == profile;
            continue;
        }
        if !inside {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let value = Some(value.trim().to_string());
        match key.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => found.access_key_id = value,
            "aws_secret_access_key" => found.secret_access_key = value,
            "aws_session_token" => found.session_token = value,
            "region" => found.region = value,
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_specs_name_folders_or_buckets() {
        assert_eq!(parse_storage_spec("/mnt/share").unwrap(), StorageSpec::Folder("/mnt/share".into()));
        assert_eq!(parse_storage_spec("file:///mnt/share").unwrap(), StorageSpec::Folder("/mnt/share".into()));
        assert_eq!(parse_storage_spec("s3://lab/humpback/").unwrap(), StorageSpec::Bucket("s3://lab/humpback".into()));
        assert_eq!(parse_storage_spec("gs://lab").unwrap(), StorageSpec::Bucket("gs://lab".into()));
        for bad in ["", "s3://", "s3:///x", "http://example.org/x", "s3://b/../x", "s3://b/a//c"] {
            assert!(parse_storage_spec(bad).is_err(), "{bad:?} accepted");
        }
        assert!(is_object_url("s3://b/k") && is_object_url("az://c/k") && !is_object_url("audio/raw/1/x.wav"));
        assert_eq!(split_object_url("s3://b/x/y.wav"), Some(("s3://b".into(), "x/y.wav".into())));
        assert!(is_in_place_location("file:///archive/2019/a.wav") && is_in_place_location("s3://b/a.wav"));
        for bad in
            ["file://relative/a.wav", "file:///archive/../etc/passwd", "audio/raw/1/original.wav", "file:///a\nb"]
        {
            assert!(!is_in_place_location(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_profile_is_read_from_credentials_and_config_files() {
        let credentials =
            "[default]\naws_access_key_id = AK\naws_secret_access_key=SK\n\n[lab]\naws_access_key_id = LAB\n";
        assert_eq!(
            parse_aws_profile(credentials, "default"),
            AwsProfile { access_key_id: Some("AK".into()), secret_access_key: Some("SK".into()), ..Default::default() }
        );
        assert_eq!(parse_aws_profile(credentials, "lab").access_key_id.as_deref(), Some("LAB"));
        let config = "# comment\n[profile lab]\nregion = eu-west-1\n[default]\nregion=us-east-1\n";
        assert_eq!(parse_aws_profile(config, "lab").region.as_deref(), Some("eu-west-1"));
        assert_eq!(parse_aws_profile(config, "default").region.as_deref(), Some("us-east-1"));
        assert_eq!(parse_aws_profile(config, "missing"), AwsProfile::default());
    }
}
