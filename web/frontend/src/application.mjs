// Progressive enhancement of the staff pages; every page works without it (and without JavaScript at all).
// Loaded as a module (`<script type="module">`), so it runs only in the browsers GOV.UK Frontend supports, which
// is what the `govuk-frontend-supported` class says; no inline script is needed (the pages' CSP forbids them).
import { initAll as initGovukFrontend } from "/assets/govuk/govuk-frontend.min.js";
import { initAll as initMojFrontend } from "/assets/moj/moj-frontend.min.js";

document.body.classList.add("js-enabled", "govuk-frontend-supported");
initGovukFrontend();
initMojFrontend();
