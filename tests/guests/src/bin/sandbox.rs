//! Reports what the guest can see of its host: files, directories and environment.
//! Each line is `name: value`; the test reads them.

use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(_request: Request<Body>) -> Result<Response<Body>, Error> {
    let mut out = String::new();
    let passwd = std::fs::read_to_string("/etc/passwd");
    out.push_str(&format!(
        "read /etc/passwd: {}\n",
        describe(&passwd.map(|s| s.len()))
    ));
    let root = std::fs::read_dir("/").map(|d| d.count());
    out.push_str(&format!("list /: {}\n", describe(&root)));
    let cwd = std::fs::read_dir(".").map(|d| d.count());
    out.push_str(&format!("list .: {}\n", describe(&cwd)));
    let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    out.push_str(&format!("env: {}\n", vars.join(",")));
    println!("sandbox guest says hello on stdout");
    eprintln!("sandbox guest says hello on stderr");
    Ok(Response::new(out.into()))
}

fn describe(r: &std::io::Result<usize>) -> String {
    match r {
        Ok(n) => format!("ok {n}"),
        Err(e) => format!("denied ({e})"),
    }
}
