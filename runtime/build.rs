//! Builds the JavaScript engine component (`sdk-js/engine`, QuickJS-NG for wasm32-wasip2)
//! that `edge build` embeds, so the `edge` binary alone turns a `.js` file into a component.
//! Set `EDGE_JS_ENGINE=path/to/edge_js_engine.wasm` to embed a prebuilt engine instead
//! (packagers, machines without the C toolchain).

include!("../sdk-js/build_engine.rs");

fn main() {
    EngineBuild {
        features: "",
        target_dir: "wasm",
        out_name: "edge_js_engine.wasm",
        prebuilt_env: "EDGE_JS_ENGINE",
        what: "its JavaScript engine",
    }
    .run();
}
