// Progressive enhancement only: drag-and-drop and an instant preview.
// The form works without this file.
document.addEventListener("DOMContentLoaded", () => {
  const drop = document.querySelector(".drop");
  const input = document.getElementById("file");
  const preview = document.querySelector(".preview");
  if (!drop || !input || !preview) return;

  const show = () => {
    const file = input.files && input.files[0];
    if (!file) { preview.hidden = true; return; }
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(file);  // stays in the browser; TIFF may not preview
    preview.hidden = false;
  };
  preview.addEventListener("error", () => { preview.hidden = true; });  // DICOM (and TIFF): no preview
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
