// Outpost Studio: refreshes the parts of a page marked data-live, follows a
// job's logs, confirms destructive forms and sends the Test box in place.
// Pages work without it; it only ever inserts HTML the Studio rendered (and
// escaped) on the server, and log text as text.
"use strict";

(function () {
  const fragmentHeaders = { "X-Studio-Fragment": "1" };
  const livePeriod = 2000;

  // A fetch answered 401 means the session ended: back to the sign-in page.
  function signedOut(resp) {
    if (resp.status !== 401) return false;
    location.assign("/studio/signin?next=" + encodeURIComponent(location.pathname));
    return true;
  }

  // Replacing HTML would close the <details> a user opened: keep them open.
  function replaceKeepingOpen(el, html) {
    const open = Array.from(el.querySelectorAll("details"), (d) => d.open);
    el.innerHTML = html;
    el.querySelectorAll("details").forEach((d, i) => { if (open[i]) d.open = true; });
  }

  function live(el) {
    let last = null;
    const stopWhen = el.dataset.stopWhen;
    async function tick() {
      if (document.hidden) return schedule();
      try {
        const resp = await fetch(el.dataset.live, { headers: fragmentHeaders, cache: "no-store", credentials: "same-origin" });
        if (signedOut(resp)) return;
        const html = await resp.text();
        if (html !== last) {
          last = html;
          replaceKeepingOpen(el, html);
        }
      } catch (e) {
        // The workspace restarts or the network is gone: try again later.
      }
      if (stopWhen && el.querySelector(stopWhen)) return;
      schedule();
    }
    function schedule() { setTimeout(tick, livePeriod); }
    if (!(stopWhen && el.querySelector(stopWhen))) schedule();
  }

  function base64Bytes(s) {
    const bin = atob(s || "");
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  // followLogs long-polls the job's logs from where the page left off and
  // appends each file's new bytes to its <pre>, one section per file (per
  // rank, for distributed jobs), until the job ended and all was read.
  function followLogs(root) {
    const decoders = new Map();
    function preOf(file) {
      for (const pre of root.querySelectorAll("pre[data-file]")) {
        if (pre.dataset.file === file) return pre;
      }
      const section = document.createElement("section");
      section.className = "logfile";
      const h = document.createElement("h3");
      h.className = "mono";
      h.textContent = file;
      const pre = document.createElement("pre");
      pre.dataset.file = file;
      pre.dataset.offset = "0";
      section.append(h, pre);
      root.insertBefore(section, root.querySelector("#logs-empty"));
      return pre;
    }
    async function poll() {
      const from = Array.from(root.querySelectorAll("pre[data-file]"), (p) => p.dataset.file + ":" + p.dataset.offset).join(",");
      let answer;
      try {
        const resp = await fetch(root.dataset.logs + (from ? "?from=" + encodeURIComponent(from) : ""), { headers: fragmentHeaders, cache: "no-store", credentials: "same-origin" });
        if (signedOut(resp)) return;
        if (!resp.ok) throw new Error(resp.status);
        answer = await resp.json();
      } catch (e) {
        setTimeout(poll, 3000);
        return;
      }
      for (const chunk of answer.chunks || []) {
        const pre = preOf(chunk.file);
        const have = Number(pre.dataset.offset);
        let bytes = base64Bytes(chunk.data);
        if (chunk.offset > have) continue; // not what was asked for
        bytes = bytes.subarray(have - chunk.offset);
        if (!bytes.length) continue;
        if (!decoders.has(chunk.file)) decoders.set(chunk.file, new TextDecoder("utf-8"));
        const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.append(decoders.get(chunk.file).decode(bytes, { stream: true }));
        pre.dataset.offset = String(have + bytes.length);
        if (atBottom) pre.scrollTop = pre.scrollHeight;
      }
      const empty = root.querySelector("#logs-empty");
      if (empty && root.querySelector("pre[data-file]")) empty.hidden = true;
      if (answer.done) {
        root.dataset.done = "";
        return;
      }
      poll();
    }
    poll();
  }

  document.addEventListener("submit", async (e) => {
    const form = e.target;
    if (form.dataset.confirm && !confirm(form.dataset.confirm)) {
      e.preventDefault();
      return;
    }
    const target = form.dataset.fragmentSubmit && document.querySelector(form.dataset.fragmentSubmit);
    if (!target) return;
    e.preventDefault();
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    try {
      const body = new URLSearchParams(new FormData(form));
      const resp = await fetch(form.action, { method: "POST", body, credentials: "same-origin",
        headers: Object.assign({ "X-CSRF-Token": form.elements.csrf.value }, fragmentHeaders) });
      if (signedOut(resp)) return;
      target.innerHTML = await resp.text();
    } catch (err) {
      target.textContent = "The request did not reach the workspace: " + err.message;
    } finally {
      if (button) button.disabled = false;
    }
  });

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-live]").forEach(live);
    const logs = document.querySelector("#logs[data-logs]");
    if (logs && !("done" in logs.dataset)) followLogs(logs);
  });
})();
