//! The `site` example as a wasi:http component; the logic is `apps::site`.

#[wstd::http_server]
async fn main(
    request: wstd::http::Request<wstd::http::Body>,
) -> Result<wstd::http::Response<wstd::http::Body>, wstd::http::Error> {
    apps::serve(request, apps::site::handle).await
}
