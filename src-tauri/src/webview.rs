//! Settings of the web view that cut its memory. Sohbet's UI is one page that never
//! navigates and loads nothing from the network but the app's own assets, so WebKitGTK's
//! browser defaults (which wry keeps) only hold memory here.

/// Applies the settings to `window`'s web view. Best effort: a web view without them works.
pub fn tune(window: &tauri::WebviewWindow) {
    #[cfg(target_os = "linux")]
    if let Err(e) = window.with_webview(|webview| linux::tune(&webview.inner())) {
        tracing::info!(error = %e, "web view settings not applied");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = window;
}

#[cfg(target_os = "linux")]
mod linux {
    use webkit2gtk::{CacheModel, SettingsExt, WebContextExt, WebView, WebViewExt};

    pub fn tune(view: &WebView) {
        if let Some(context) = view.context() {
            // A document viewer keeps no memory cache of decoded resources and no pages
            // for going back: the assets are local and read again in microseconds.
            context.set_cache_model(CacheModel::DocumentViewer);
        }
        if let Some(settings) = WebViewExt::settings(view) {
            // There is no "back": wry turns the back/forward cache on, for browsers.
            settings.set_enable_page_cache(false);
            // Not used by the UI (the ring tone is Web Audio, calls are the Rust side's).
            settings.set_enable_webgl(false);
            settings.set_enable_media_stream(false);
            settings.set_enable_dns_prefetching(false);
        }
    }
}
