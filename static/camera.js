// The camera page: the device's camera with a frame guide; a captured frame is sent as a JPEG, in
// memory, to the upload form's own endpoint, and the result section it answers with is shown here.
// Live mode sends about one frame a second and shows the verdict and the boxes over the picture.
document.addEventListener("DOMContentLoaded", () => {
  const page = document.querySelector(".camera");
  const video = page && page.querySelector("video");
  if (!video) return;
  const status = page.querySelector(".camera-status");
  const controls = page.querySelector(".camera-controls");
  const capture = page.querySelector("button.capture");
  const live = page.querySelector("input.live");
  const overlay = page.querySelector(".live-result");
  const result = document.querySelector(".camera-result");
  const say = (text) => { status.textContent = text; };
  let busy = false;
  let timer = null;

  async function start() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      say("This browser cannot use the camera here: open the page over HTTPS (or as localhost on this computer).");
      return;
    }
    try {
      video.srcObject = await navigator.mediaDevices.getUserMedia({
        audio: false, video: { facingMode: { ideal: "environment" }, width: { ideal: 1920 }, height: { ideal: 1080 } } });
      await video.play();
      capture.disabled = false;
      say("Fit the whole film or screen inside the frame, hold still, then capture.");
    } catch (err) {
      say(`The camera could not be started (${err.name}): allow the camera for this site, or upload a photo instead.`);
    }
  }

  // The picture as it is now, as a JPEG blob at the camera's own resolution.
  function frame() {
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
  }

  // Send one frame; the answer is the upload page with its result (or its refusal) section.
  // A live frame (sent by the timer) is answered but not kept for the site's statistics.
  async function analyse(isLive = false) {
    if (busy || !video.videoWidth) return;
    busy = true;
    say("Analysing…");
    try {
      const body = new FormData(controls);
      if (isLive) body.append("live", "1");
      body.append("file", await frame(), "camera.jpg");
      const response = await fetch(page.dataset.analyse, { method: "POST", body, credentials: "same-origin" });
      const answer = new DOMParser().parseFromString(await response.text(), "text/html");
      const section = answer.querySelector(".result") || answer.querySelector(".error");
      result.replaceChildren(...(section ? [document.adoptNode(section)] : []));
      showOverLive(section);
      say(response.ok ? "Analysed. Capture again at any time." : "The frame could not be read: see below.");
    } catch (err) {
      say("The frame could not be sent: check the connection and try again.");
    } finally {
      busy = false;
    }
  }

  // In live mode, the verdict and the straightened film with its boxes over the picture.
  function showOverLive(section) {
    overlay.hidden = !live.checked || !section;
    if (overlay.hidden) return;
    const verdict = section.querySelector(".verdict");
    const line = document.createElement("p");
    line.className = "live-verdict";
    line.textContent = verdict ? verdict.textContent.trim() : section.textContent.trim();
    const boxes = section.querySelector("svg.xray-boxes");
    overlay.replaceChildren(line, ...(boxes ? [boxes.cloneNode(true)] : []));
  }

  capture.addEventListener("click", () => analyse(false));
  live.addEventListener("change", () => {
    clearInterval(timer);
    timer = live.checked ? setInterval(() => analyse(true), 1000) : null;
    if (!live.checked) overlay.hidden = true;
  });
  start();
});
