//! Build script: makes the LiteRT runtime library (`libLiteRt.so`) available to every binary of
//! this package (the CLI/server, unit tests, integration tests, benches).
//!
//! What happens, in order:
//! 1. If `HUMPBACK_LITERT_LIB_DIR` is set, that directory must hold `libLiteRt.so` (bring your own
//!    library, e.g. offline machines); nothing is downloaded.
//! 2. Otherwise the library lives in `<target dir>/litert-2.1.4/libLiteRt.so`. If it is there and its
//!    SHA-256 matches the pin below, nothing is downloaded (offline rebuilds work).
//! 3. Otherwise the pinned wheel `ai_edge_litert-2.1.4-cp311-cp311-manylinux_2_27_x86_64.whl` is
//!    fetched from PyPI with `python3 -m pip download` (pip's own cache is used when warm), its
//!    SHA-256 is checked, `ai_edge_litert/libLiteRt.so` is unpacked, its SHA-256 is checked, and the
//!    wheel is deleted.
//!
//! Then the directory is added to the link search path and to the run-time search path (rpath) of
//! our binaries, together with `$ORIGIN` so a copy of the library next to an installed binary works.
//!
//! litert-sys (the FFI bindings) has its own build script that would download other files from
//! GitHub; `.cargo/config.toml` sets `LITERT_LIB_DIR` (an existing directory of this repository, so
//! its check passes) and `LITERT_NO_DOWNLOAD=1`, which turn that download off.

use std::env;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

const LITERT_VERSION: &str = "2.1.4";
const LIBRARY_FILE_NAME: &str = "libLiteRt.so";
const LIBRARY_MEMBER_IN_WHEEL: &str = "ai_edge_litert/libLiteRt.so";

/// One pinned wheel per supported target.
struct PinnedWheel {
    target: &'static str,
    pip_platform: &'static str,
    file_name: &'static str,
    wheel_sha256: &'static str,
    library_sha256: &'static str,
}

const PINNED_WHEELS: &[PinnedWheel] = &[PinnedWheel {
    target: "x86_64-unknown-linux-gnu",
    pip_platform: "manylinux_2_27_x86_64",
    file_name: "ai_edge_litert-2.1.4-cp311-cp311-manylinux_2_27_x86_64.whl",
    wheel_sha256: "1bed8ccd8dfc4f2ec388bc79cb90920c261a244995ce378d396fb8967b7db640",
    library_sha256: "c590f1124053ce6d2ceaef6d1174af15f8103a76872059414d18ff2e9cfaf681",
}];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HUMPBACK_LITERT_LIB_DIR");
    println!("cargo:rerun-if-env-changed=HUMPBACK_PYTHON");
    match locate_or_fetch_library() {
        Ok(library_directory) => {
            let directory = library_directory.display();
            println!("cargo:rerun-if-changed={directory}/{LIBRARY_FILE_NAME}");
            println!("cargo:rustc-link-search=native={directory}");
            println!("cargo:rustc-link-arg=-Wl,-rpath,{directory}");
            println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN");
        }
        Err(message) => {
            println!("cargo::error=litert runtime: {message}");
        }
    }
}

fn locate_or_fetch_library() -> Result<PathBuf, String> {
    if let Some(directory) = env::var_os("HUMPBACK_LITERT_LIB_DIR") {
        let directory = PathBuf::from(directory);
        if !directory.join(LIBRARY_FILE_NAME).is_file() {
            return Err(format!(
                "HUMPBACK_LITERT_LIB_DIR={} does not contain {LIBRARY_FILE_NAME}; unset it to fetch the library \
                 from PyPI, or put libLiteRt.so of ai-edge-litert {LITERT_VERSION} there",
                directory.display()
            ));
        }
        return Ok(directory);
    }
    let target = env::var("TARGET").map_err(|_| "cargo did not set TARGET".to_string())?;
    let Some(pinned_wheel) = PINNED_WHEELS.iter().find(|wheel| wheel.target == target) else {
        return Err(format!(
            "no pinned ai-edge-litert {LITERT_VERSION} wheel for target {target}; set HUMPBACK_LITERT_LIB_DIR to a \
             directory holding libLiteRt.so built for this target"
        ));
    };
    let library_directory = cache_directory()?;
    let library_path = library_directory.join(LIBRARY_FILE_NAME);
    if library_path.is_file() && sha256_of_file(&library_path)? == pinned_wheel.library_sha256 {
        return Ok(library_directory);
    }
    fs::create_dir_all(&library_directory)
        .map_err(|error| format!("cannot create {}: {error}", library_directory.display()))?;
    println!(
        "cargo:warning=fetching {} from PyPI (pip download) into {} (first build only)",
        pinned_wheel.file_name,
        library_directory.display()
    );
    let wheel_path = download_wheel(pinned_wheel, &library_directory)?;
    let wheel_sha256 = sha256_of_file(&wheel_path)?;
    if wheel_sha256 != pinned_wheel.wheel_sha256 {
        let _ = fs::remove_file(&wheel_path);
        return Err(format!(
            "sha256 mismatch for {}: expected {}, got {wheel_sha256}",
            pinned_wheel.file_name, pinned_wheel.wheel_sha256
        ));
    }
    let library_bytes = read_member_of_wheel(&wheel_path, LIBRARY_MEMBER_IN_WHEEL)?;
    let library_sha256 = hex_of(&Sha256::digest(&library_bytes));
    if library_sha256 != pinned_wheel.library_sha256 {
        return Err(format!(
            "sha256 mismatch for {LIBRARY_MEMBER_IN_WHEEL} in {}: expected {}, got {library_sha256}",
            pinned_wheel.file_name, pinned_wheel.library_sha256
        ));
    }
    let temporary_path = library_directory.join(format!("{LIBRARY_FILE_NAME}.partial"));
    fs::write(&temporary_path, &library_bytes)
        .map_err(|error| format!("cannot write {}: {error}", temporary_path.display()))?;
    fs::rename(&temporary_path, &library_path)
        .map_err(|error| format!("cannot rename to {}: {error}", library_path.display()))?;
    let _ = fs::remove_file(&wheel_path);
    Ok(library_directory)
}

/// `<target dir>/litert-<version>`: OUT_DIR is `<target dir>[/<triple>]/<profile>/build/<package>-<hash>/out`,
/// so debug and release builds share one copy, and `cargo clean` removes it.
fn cache_directory() -> Result<PathBuf, String> {
    let out_directory = env::var_os("OUT_DIR").ok_or_else(|| "cargo did not set OUT_DIR".to_string())?;
    let out_directory = PathBuf::from(out_directory);
    let target_directory = out_directory
        .ancestors()
        .nth(4)
        .ok_or_else(|| format!("unexpected OUT_DIR layout: {}", out_directory.display()))?;
    Ok(target_directory.join(format!("litert-{LITERT_VERSION}")))
}

fn download_wheel(pinned_wheel: &PinnedWheel, destination: &Path) -> Result<PathBuf, String> {
    let python = env::var("HUMPBACK_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let output = Command::new(&python)
        .args(["-m", "pip", "download", "--disable-pip-version-check", "--no-deps", "--only-binary=:all:"])
        .args(["--platform", pinned_wheel.pip_platform])
        .args(["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"])
        .arg("--dest")
        .arg(destination)
        .arg(format!("ai-edge-litert=={LITERT_VERSION}"))
        .output()
        .map_err(|error| {
            format!(
                "cannot run `{python} -m pip` ({error}); install python3 and pip (Debian: apt-get install python3-pip), \
                 or set HUMPBACK_LITERT_LIB_DIR to a directory holding libLiteRt.so of ai-edge-litert {LITERT_VERSION}"
            )
        })?;
    if !output.status.success() {
        return Err(format!(
            "`{python} -m pip download ai-edge-litert=={LITERT_VERSION}` failed ({}); is PyPI reachable? stderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let wheel_path = destination.join(pinned_wheel.file_name);
    if !wheel_path.is_file() {
        return Err(format!(
            "pip download succeeded but {} is not in {}",
            pinned_wheel.file_name,
            destination.display()
        ));
    }
    Ok(wheel_path)
}

fn read_member_of_wheel(wheel_path: &Path, member: &str) -> Result<Vec<u8>, String> {
    let file = fs::File::open(wheel_path).map_err(|error| format!("cannot open {}: {error}", wheel_path.display()))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|error| format!("{} is not a zip file: {error}", wheel_path.display()))?;
    let mut entry =
        archive.by_name(member).map_err(|error| format!("{} has no {member}: {error}", wheel_path.display()))?;
    let mut bytes = Vec::new();
    entry
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot unpack {member} from {}: {error}", wheel_path.display()))?;
    Ok(bytes)
}

fn sha256_of_file(path: &Path) -> Result<String, String> {
    let bytes = fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    Ok(hex_of(&Sha256::digest(&bytes)))
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
