//! The Python notebook client (`clients/python`) and the example notebook, run by pytest
//! against `medfed demo` started from this build's binary. Skipped (saying so) where Python or
//! the client's test dependencies are not installed: `pip install -e 'clients/python[test]'`.

use std::path::Path;
use std::process::Command;

#[test]
fn the_python_client_and_the_example_notebook_work_against_the_demo() {
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/python");
    let ready = Command::new("python3")
        .args([
            "-c",
            "import medfed, pytest, nbclient, ipykernel, matplotlib",
        ])
        .current_dir(&client)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        eprintln!("skipped: pip install -e 'clients/python[test]' to test the Python client");
        return;
    }
    let out = Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(&client)
        .env("MEDFED_BIN", env!("CARGO_BIN_EXE_medfed"))
        .env_remove("MEDFED_DEMO_JSON")
        .output()
        .expect("pytest runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pytest failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains(" passed") && !report.contains("skipped"),
        "{report}"
    );
}
