import { mount } from "svelte";
import App from "./App.svelte";
import "./app.css";

// Start-up marks (`sohbet:*`, read by the launch benchmark): the bundle runs, then the
// first frame is drawn.
performance.mark("sohbet:script");
const target = document.getElementById("app");
if (!target) throw new Error("no #app element");
const app = mount(App, { target });
requestAnimationFrame(() => performance.mark("sohbet:first-paint"));
export default app;
