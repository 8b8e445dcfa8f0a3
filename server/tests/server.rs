//! `zkraft-server` as an operator runs it: three processes on 127.0.0.1 elect a leader
//! (raft-rs's own lines in the log), stop cleanly on SIGTERM and SIGINT, and a second
//! server on a directory in use is refused with a clear error.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = env!("CARGO_BIN_EXE_zkraft-server");

fn free_ports(n: usize) -> Vec<u16> {
    let l: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    l.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

fn spawn(args: &[String], log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(SERVER)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap()
}

fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("server {} did not exit within {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_log(path: &Path, what: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(what) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {what:?} in {}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: i32) {
    // Only ever a process this test started.
    let rc = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(rc, 0);
}

#[test]
fn three_servers_elect_a_leader_and_stop_cleanly_on_sigterm_and_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(3);
    let peers = (1..=3)
        .map(|i| format!("{i}=127.0.0.1:{}", ports[i - 1]))
        .collect::<Vec<_>>()
        .join(",");
    let mut servers: Vec<Child> = (1..=3)
        .map(|i| {
            let args = [
                "--id".to_string(),
                i.to_string(),
                "--peers".into(),
                peers.clone(),
                "--data-dir".into(),
                dir.path().join(format!("d{i}")).display().to_string(),
                "--tick-ms".into(),
                "50".into(),
            ];
            spawn(&args, &dir.path().join(format!("log{i}")))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        let found = (1..=3).find(|i| {
            std::fs::read_to_string(dir.path().join(format!("log{i}")))
                .unwrap_or_default()
                .contains("became leader at term")
        });
        if let Some(i) = found {
            break i;
        }
        assert!(
            Instant::now() < deadline,
            "no server logged becoming leader"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    for i in 1..=3 {
        let log = wait_log(
            &dir.path().join(format!("log{i}")),
            "zkraft-server running",
            Duration::from_secs(10),
        );
        assert!(log.contains("INFO"), "log lines carry their level");
    }
    for (n, child) in servers.iter_mut().enumerate() {
        let sig = if n == 0 { libc::SIGINT } else { libc::SIGTERM };
        signal(child, sig);
        let status = wait_exit(child, Duration::from_secs(20));
        assert!(status.success(), "server {} exited with {status}", n + 1);
        let log = wait_log(
            &dir.path().join(format!("log{}", n + 1)),
            "stopped",
            Duration::from_secs(5),
        );
        let name = if n == 0 { "SIGINT" } else { "SIGTERM" };
        assert!(log.contains(name), "server {} logged its signal", n + 1);
    }
    println!("server {leader} led");
}

#[test]
fn a_second_server_on_a_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(2);
    let data = dir.path().join("data").display().to_string();
    let args = |port: u16| {
        vec![
            "--id".to_string(),
            "1".into(),
            "--peers".into(),
            format!("1=127.0.0.1:{port}"),
            "--data-dir".into(),
            data.clone(),
        ]
    };
    let mut first = spawn(&args(ports[0]), &dir.path().join("log1"));
    wait_log(
        &dir.path().join("log1"),
        "became leader at term",
        Duration::from_secs(20),
    );
    let mut second = spawn(&args(ports[1]), &dir.path().join("log2"));
    let status = wait_exit(&mut second, Duration::from_secs(20));
    assert!(!status.success());
    let log = std::fs::read_to_string(dir.path().join("log2")).unwrap();
    assert!(log.contains("in use by another node"), "clear error: {log}");
    signal(&first, libc::SIGTERM);
    assert!(wait_exit(&mut first, Duration::from_secs(20)).success());
}

#[test]
fn bad_command_lines_are_refused_with_a_message() {
    let out = Command::new(SERVER)
        .args(["--id", "1", "--data-dir", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--peers is required"));
    let help = Command::new(SERVER).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--data-dir"));
}
