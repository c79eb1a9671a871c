//! With the `tch` feature: compiles `csrc/fused_adam.cpp` (LibTorch's fused Adam) and
//! `csrc/autograd.cpp` (autograd with output gradients), which tch-rs does not bind, against the
//! libtorch that torch-sys found. Without it: nothing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/fused_adam.cpp");
    println!("cargo:rerun-if-changed=csrc/autograd.cpp");
    println!("cargo:rerun-if-changed=csrc/report.h");
    #[cfg(feature = "tch")]
    fused_adam();
}

#[cfg(feature = "tch")]
fn fused_adam() {
    use std::path::PathBuf;
    // torch-sys (`links = "tch"`) passes its libtorch lib folder to direct dependents.
    let lib = PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys did not report its libtorch"),
    );
    println!("cargo:rerun-if-env-changed=LIBTORCH_INCLUDE");
    let root = std::env::var_os("LIBTORCH_INCLUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|| lib.parent().expect("libtorch lib folder").to_path_buf());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={}", cxx11_abi()))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("csrc/fused_adam.cpp")
        .file("csrc/autograd.cpp")
        .compile("instrec_fused_adam");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

/// The C++ ABI libtorch was built with: the wheel's own answer where torch-sys used the wheel, as
/// torch-sys decides it; else `LIBTORCH_CXX11_ABI` (default 1).
#[cfg(feature = "tch")]
fn cxx11_abi() -> String {
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
        let out = std::process::Command::new(python)
            .args([
                "-c",
                "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))",
            ])
            .output()
            .expect("python3 with torch (LIBTORCH_USE_PYTORCH is set)");
        return String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into())
}
