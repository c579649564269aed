// Progressive enhancement only: the read buttons save the read without leaving the result page.
// The forms work without this file (they then show a page saying the read was recorded).
const words = { fractured: "fracture", not_fractured: "no fracture", unsure: "not sure" };

const saveInPlace = (form) => {
  const status = form.querySelector(".read-status");
  if (!status) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = event.submitter;
    const body = new FormData(form, button);
    status.classList.remove("failed");
    status.textContent = "Saving…";
    try {
      const response = await fetch(form.action, { method: "POST", body, headers: { Accept: "application/json" } });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error || "The read could not be saved.");
      form.querySelectorAll("button[name=read]").forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
      status.textContent = `Saved: ${words[answer.read]}. Click another answer to correct it.`;
    } catch (error) {
      status.classList.add("failed");
      status.textContent = error instanceof SyntaxError ? "The read could not be saved." : error.message;
    }
  });
};

document.addEventListener("DOMContentLoaded", () => document.querySelectorAll("form.read").forEach(saveInPlace));
