//! `scripts/bench_lib.sh`'s `run_while_running`, which the bench's replication phase runs its
//! load through: a replica that dies mid-run fails the phase at once with the replica's log,
//! instead of leaving the load retrying against a gateway that can no longer succeed.

use std::{
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

/// Runs `script` in bash with `scripts/bench_lib.sh` sourced, in a scratch directory (`$dir`),
/// and returns its output; panics if it has not ended after 50 s (the commands it watches
/// sleep for 60 s, so a script still running then has a helper that did not stop them).
fn bench_lib(script: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let lib = testkit::repo_root().join("scripts/bench_lib.sh");
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail; . '{}'; {script}",
            lib.display()
        ))
        .env("dir", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(50) {
            child.kill().unwrap();
            panic!("the script did not end: {script}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_watched_process_that_exits_stops_the_command_and_shows_its_log() {
    // the watched process logs and exits after a second; the command would sleep a minute
    let out = bench_lib(
        r#"(echo "starting" > "$dir/log"; sleep 1; echo "Replica was unable to write command to disk" >> "$dir/log") &
watched=$!
status=0
run_while_running "$watched" "$dir/log" -- sleep 60 || status=$?
echo "status $status""#,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "status 3", "{stderr}");
    assert!(
        stderr.contains("exited while `sleep 60` ran")
            && stderr.contains("Replica was unable to write command to disk"),
        "{stderr}"
    );
}

#[test]
fn a_watched_process_that_keeps_running_leaves_the_commands_status() {
    let out = bench_lib(
        r#"sleep 60 &
watched=$!
status=0
run_while_running "$watched" "$dir/log" -- bash -c 'sleep 0.7; exit 7' || status=$?
echo "status $status"
run_while_running "$watched" "$dir/log" -- true && echo "true passes"
kill "$watched""#,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "status 7\ntrue passes");
}

#[test]
fn a_zombie_is_not_running() {
    // a child that exited but is not reaped yet: `running` must not take it for alive, or a
    // replica's parent that never waits would hide its death
    let out = bench_lib(
        r#"python3 -c 'import os, subprocess, sys, time
child = subprocess.Popen(["true"]); time.sleep(0.5)
print(child.pid); sys.stdout.flush(); time.sleep(3)' > "$dir/pid" &
sleep 1
zombie="$(cat "$dir/pid")"
grep -q " Z " "/proc/$zombie/stat" && echo "a zombie"
running "$zombie" || echo "not running"
running "$$" && echo "this shell runs"
running "" || echo "no pid, not running""#,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        "a zombie\nnot running\nthis shell runs\nno pid, not running",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
