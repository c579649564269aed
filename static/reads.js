// Progressive enhancement only: the read buttons save the read without leaving the result page.
// The form works without this file (it then shows a page saying the read was recorded).
document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("form.read");
  const status = form && form.querySelector(".read-status");
  if (!form || !status) return;
  const words = { fractured: "fracture", not_fractured: "no fracture", unsure: "not sure" };

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
});
