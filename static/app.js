// Progressive enhancement only: drag-and-drop and an instant preview of the chosen files.
// The form works without this file.
document.addEventListener("DOMContentLoaded", () => {
  const drop = document.querySelector(".drop");
  const input = document.getElementById("file");
  const previews = document.querySelector(".previews");
  const chosen = document.querySelector(".chosen");
  if (!drop || !input || !previews || !chosen) return;

  const clear = () => {
    previews.querySelectorAll("img").forEach((img) => URL.revokeObjectURL(img.src));
    previews.replaceChildren();
  };
  const show = () => {
    clear();
    const files = Array.from(input.files || []);
    chosen.textContent = files.length > 1 ? `${files.length} images chosen: they will be read as one study.` : "";
    chosen.hidden = files.length < 2;
    previews.classList.toggle("several", files.length > 1);
    files.forEach((file) => {
      const img = document.createElement("img");
      img.alt = "";
      img.addEventListener("error", () => { img.hidden = true; });  // DICOM (and TIFF): no preview
      img.src = URL.createObjectURL(file);  // stays in the browser
      previews.append(img);
    });
    previews.hidden = files.length === 0;
  };
  input.addEventListener("change", show);
  ["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (event) => {
    event.preventDefault();
    drop.classList.add("dragging");
  }));
  ["dragleave", "drop"].forEach((type) => drop.addEventListener(type, () => drop.classList.remove("dragging")));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      show();
    }
  });
});
