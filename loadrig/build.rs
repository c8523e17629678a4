//! Builds loadrig's JavaScript VU engine: `sdk-js/engine` with the `k6` feature (QuickJS-NG
//! with k6's API as a `loadrig:scenario/vu-js` component), embedded so that
//! `loadrig run script.js` needs nothing else. Set `LOADRIG_JS_ENGINE` to a prebuilt one to
//! embed it instead.

include!("../sdk-js/build_engine.rs");

fn main() {
    EngineBuild {
        features: "k6",
        target_dir: "wasm-k6",
        out_name: "loadrig_k6_engine.wasm",
        prebuilt_env: "LOADRIG_JS_ENGINE",
        what: "its JavaScript (k6) engine",
    }
    .run();
}
