fn main() {
    // The app embeds ui/dist at compile time. `cargo xtask test|up` builds the UI first;
    // a plain `cargo build --workspace` without it still compiles, with a page that says
    // how to build the UI.
    let dist = std::path::Path::new("../ui/dist");
    if !dist.join("index.html").exists() {
        let _ = std::fs::create_dir_all(dist);
        let _ = std::fs::write(
            dist.join("index.html"),
            "<!doctype html><meta charset=utf-8><title>Sohbet</title>\
             <p>The UI is not built: run <code>npm --prefix ui ci &amp;&amp; npm --prefix ui run build</code> \
             (or <code>cargo xtask up</code>), then rebuild the app.</p>",
        );
    }
    tauri_build::build()
}
