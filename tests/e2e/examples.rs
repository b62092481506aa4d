//! The example configs stay valid, and the hello example really serves under mcpd.

use crate::common::{free_port, wait_for, Home};
use std::io::{Read, Write};
use std::time::Duration;

fn examples_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn every_example_config_is_valid() {
    let home = Home::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = home.ok(&["check", path.to_str().unwrap()]);
            assert!(out.contains("OK"), "{}: {out}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 1, "no example configs found");
}

#[test]
fn the_hello_example_serves_and_stops() {
    let home = Home::new();
    let port = free_port();
    let config = std::fs::read_to_string(examples_dir().join("hello.toml"))
        .unwrap()
        .replace("PORT = \"8080\"", &format!("PORT = \"{port}\""))
        .replace("args = [\"hello/server.py\"]", &format!("args = [{:?}]", examples_dir().join("hello/server.py")));
    let file = home.write("hello.toml", &config);
    home.ok(&["start", file.to_str().unwrap(), "hello"]);
    let body = wait_for("the hello server to answer", Duration::from_secs(15), || get(port));
    let pid = home.pid("hello");
    assert!(body.contains(&format!("hello from pid {pid}")), "{body}");
    home.ok(&["stop", "hello"]);
    let exit = home.describe("hello")["last_exits"][0].clone();
    assert_eq!(exit["code"], 0, "the example drains and exits 0 on SIGTERM: {exit}");
}

fn get(port: u16) -> Result<String, String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}
