//! Build script: makes the two inference runtime libraries available to every binary of this
//! package (the CLI/server, unit tests, integration tests, benches):
//! - LiteRT's `libLiteRt.so` (TFLite models), from the PyPI wheel `ai-edge-litert==2.1.4`;
//! - ONNX Runtime's `libonnxruntime.so` (ONNX models), from the PyPI wheel `onnxruntime==1.22.1`.
//!
//! What happens for each, in order:
//! 1. If its override variable (`HUMPBACK_LITERT_LIB_DIR`, `HUMPBACK_ONNXRUNTIME_LIB_DIR`) is set, that
//!    directory must hold the library (bring your own, e.g. offline machines); nothing is downloaded.
//! 2. Otherwise the library lives in `<target dir>/<name>-<version>/`. If it is there and its SHA-256
//!    matches the pin below, nothing is downloaded (offline rebuilds work).
//! 3. Otherwise the pinned wheel is fetched from PyPI with `python3 -m pip download` (pip's own cache
//!    is used when warm), its SHA-256 is checked, the library is unpacked, its SHA-256 is checked,
//!    and the wheel is deleted.
//!
//! Then the directory is added to the link search path and to the run-time search path (rpath) of
//! our binaries, together with `$ORIGIN` so a copy of the libraries next to an installed binary works.
//!
//! The binding crates have build scripts of their own that would download other files; the
//! variables in `.cargo/config.toml` turn those downloads off (litert-sys: `LITERT_LIB_DIR`,
//! `LITERT_NO_DOWNLOAD`; ort-sys, used without `download-binaries`: `ORT_LIB_LOCATION`,
//! `ORT_PREFER_DYNAMIC_LINK`).

use std::env;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// One runtime library taken from a PyPI wheel.
struct PinnedLibrary {
    /// Used in messages and as the cache directory name (`<target dir>/<label>-<version>`).
    label: &'static str,
    /// The PyPI distribution name given to pip.
    pip_package: &'static str,
    version: &'static str,
    /// Environment variable naming a directory that already holds the library.
    override_variable: &'static str,
    /// The name the library is stored under: its soname, which the dynamic loader looks for.
    stored_file_name: &'static str,
    /// A link to the stored file under the name the linker looks for (`-l...`), if that differs.
    link_name: Option<&'static str>,
    member_in_wheel: &'static str,
    wheels: &'static [PinnedWheel],
}

/// One pinned wheel per supported target.
struct PinnedWheel {
    target: &'static str,
    pip_platform: &'static str,
    file_name: &'static str,
    wheel_sha256: &'static str,
    library_sha256: &'static str,
}

const LITERT: PinnedLibrary = PinnedLibrary {
    label: "litert",
    pip_package: "ai-edge-litert",
    version: "2.1.4",
    override_variable: "HUMPBACK_LITERT_LIB_DIR",
    stored_file_name: "libLiteRt.so",
    link_name: None,
    member_in_wheel: "ai_edge_litert/libLiteRt.so",
    wheels: &[PinnedWheel {
        target: "x86_64-unknown-linux-gnu",
        pip_platform: "manylinux_2_27_x86_64",
        file_name: "ai_edge_litert-2.1.4-cp311-cp311-manylinux_2_27_x86_64.whl",
        wheel_sha256: "1bed8ccd8dfc4f2ec388bc79cb90920c261a244995ce378d396fb8967b7db640",
        library_sha256: "c590f1124053ce6d2ceaef6d1174af15f8103a76872059414d18ff2e9cfaf681",
    }],
};

/// ONNX Runtime 1.22: the C API version the `ort` crate 2.0.0-rc.10 is written for.
const ONNXRUNTIME: PinnedLibrary = PinnedLibrary {
    label: "onnxruntime",
    pip_package: "onnxruntime",
    version: "1.22.1",
    override_variable: "HUMPBACK_ONNXRUNTIME_LIB_DIR",
    stored_file_name: "libonnxruntime.so.1",
    link_name: Some("libonnxruntime.so"),
    member_in_wheel: "onnxruntime/capi/libonnxruntime.so.1.22.1",
    wheels: &[PinnedWheel {
        target: "x86_64-unknown-linux-gnu",
        pip_platform: "manylinux_2_27_x86_64",
        file_name: "onnxruntime-1.22.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
        wheel_sha256: "f6effa1299ac549a05c784d50292e3378dbbf010346ded67400193b09ddc2f04",
        library_sha256: "ad9665887025474170d3e71cd28021e7e811c5bf201bc365f953e34a2c4989cc",
    }],
};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HUMPBACK_PYTHON");
    let mut rpath_origin_added = false;
    for library in [&LITERT, &ONNXRUNTIME] {
        println!("cargo:rerun-if-env-changed={}", library.override_variable);
        match locate_or_fetch_library(library) {
            Ok(library_directory) => {
                let directory = library_directory.display();
                println!("cargo:rerun-if-changed={directory}/{}", library.stored_file_name);
                println!("cargo:rustc-link-search=native={directory}");
                println!("cargo:rustc-link-arg=-Wl,-rpath,{directory}");
                if !rpath_origin_added {
                    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN");
                    rpath_origin_added = true;
                }
            }
            Err(message) => {
                println!("cargo::error={} runtime: {message}", library.label);
            }
        }
    }
}

fn locate_or_fetch_library(library: &PinnedLibrary) -> Result<PathBuf, String> {
    let PinnedLibrary { label, pip_package, version, override_variable, stored_file_name, .. } = library;
    if let Some(directory) = env::var_os(override_variable) {
        let directory = PathBuf::from(directory);
        let wanted = library.link_name.unwrap_or(stored_file_name);
        if !directory.join(wanted).is_file() {
            return Err(format!(
                "{override_variable}={} does not contain {wanted}; unset it to fetch the library from PyPI, or put \
                 {wanted} of {pip_package} {version} there",
                directory.display()
            ));
        }
        return Ok(directory);
    }
    let target = env::var("TARGET").map_err(|_| "cargo did not set TARGET".to_string())?;
    let Some(pinned_wheel) = library.wheels.iter().find(|wheel| wheel.target == target) else {
        return Err(format!(
            "no pinned {pip_package} {version} wheel for target {target}; set {override_variable} to a directory \
             holding {stored_file_name} built for this target"
        ));
    };
    let library_directory = cache_directory(label, version)?;
    let library_path = library_directory.join(stored_file_name);
    if library_path.is_file() && sha256_of_file(&library_path)? == pinned_wheel.library_sha256 {
        ensure_link_name(library, &library_directory)?;
        return Ok(library_directory);
    }
    fs::create_dir_all(&library_directory)
        .map_err(|error| format!("cannot create {}: {error}", library_directory.display()))?;
    println!(
        "cargo:warning=fetching {} from PyPI (pip download) into {} (first build only)",
        pinned_wheel.file_name,
        library_directory.display()
    );
    let wheel_path = download_wheel(library, pinned_wheel, &library_directory)?;
    let wheel_sha256 = sha256_of_file(&wheel_path)?;
    if wheel_sha256 != pinned_wheel.wheel_sha256 {
        let _ = fs::remove_file(&wheel_path);
        return Err(format!(
            "sha256 mismatch for {}: expected {}, got {wheel_sha256}",
            pinned_wheel.file_name, pinned_wheel.wheel_sha256
        ));
    }
    let library_bytes = read_member_of_wheel(&wheel_path, library.member_in_wheel)?;
    let library_sha256 = hex_of(&Sha256::digest(&library_bytes));
    if library_sha256 != pinned_wheel.library_sha256 {
        return Err(format!(
            "sha256 mismatch for {} in {}: expected {}, got {library_sha256}",
            library.member_in_wheel, pinned_wheel.file_name, pinned_wheel.library_sha256
        ));
    }
    let temporary_path = library_directory.join(format!("{stored_file_name}.partial"));
    fs::write(&temporary_path, &library_bytes)
        .map_err(|error| format!("cannot write {}: {error}", temporary_path.display()))?;
    fs::rename(&temporary_path, &library_path)
        .map_err(|error| format!("cannot rename to {}: {error}", library_path.display()))?;
    let _ = fs::remove_file(&wheel_path);
    ensure_link_name(library, &library_directory)?;
    Ok(library_directory)
}

/// `libonnxruntime.so` -> `libonnxruntime.so.1`: the linker looks for the first, the dynamic loader
/// (through the soname recorded at link time) for the second.
fn ensure_link_name(library: &PinnedLibrary, directory: &Path) -> Result<(), String> {
    let Some(link_name) = library.link_name else {
        return Ok(());
    };
    let link_path = directory.join(link_name);
    if fs::read_link(&link_path).is_ok_and(|target| target == Path::new(library.stored_file_name)) {
        return Ok(());
    }
    let _ = fs::remove_file(&link_path);
    std::os::unix::fs::symlink(library.stored_file_name, &link_path)
        .map_err(|error| format!("cannot link {} to {}: {error}", link_path.display(), library.stored_file_name))
}

/// `<target dir>/<label>-<version>`: OUT_DIR is `<target dir>[/<triple>]/<profile>/build/<package>-<hash>/out`,
/// so debug and release builds share one copy, and `cargo clean` removes it.
fn cache_directory(label: &str, version: &str) -> Result<PathBuf, String> {
    let out_directory = env::var_os("OUT_DIR").ok_or_else(|| "cargo did not set OUT_DIR".to_string())?;
    let out_directory = PathBuf::from(out_directory);
    let target_directory = out_directory
        .ancestors()
        .nth(4)
        .ok_or_else(|| format!("unexpected OUT_DIR layout: {}", out_directory.display()))?;
    Ok(target_directory.join(format!("{label}-{version}")))
}

fn download_wheel(library: &PinnedLibrary, pinned_wheel: &PinnedWheel, destination: &Path) -> Result<PathBuf, String> {
    let python = env::var("HUMPBACK_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let output = Command::new(&python)
        .args(["-m", "pip", "download", "--disable-pip-version-check", "--no-deps", "--only-binary=:all:"])
        .args(["--platform", pinned_wheel.pip_platform])
        .args(["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"])
        .arg("--dest")
        .arg(destination)
        .arg(format!("{}=={}", library.pip_package, library.version))
        .output()
        .map_err(|error| {
            format!(
                "cannot run `{python} -m pip` ({error}); install python3 and pip (Debian: apt-get install python3-pip), \
                 or set {} to a directory holding {} of {} {}",
                library.override_variable, library.stored_file_name, library.pip_package, library.version
            )
        })?;
    if !output.status.success() {
        return Err(format!(
            "`{python} -m pip download {}=={}` failed ({}); is PyPI reachable? stderr: {}",
            library.pip_package,
            library.version,
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
