// The browser test of sigma serve's page: Debian's chromium, headless, driven by
// puppeteer-core. Types a prompt, generates with the bundled model, waits for the image in
// the gallery, checks it (its size, that it is not blank, that the live preview showed and
// the parameters are listed) and saves a screenshot; then, at a phone's 390 px, that the page
// does not scroll sideways and the controls span the width (issue 25), with a second
// screenshot beside the first (NAME-390.png).
//   node page_test.mjs URL SCREENSHOT.png
// Exit 0 on success; any failure prints one line and exits 1.
import puppeteer from "puppeteer-core";
import fs from "node:fs";

const [url, screenshot] = process.argv.slice(2);
const fail = (msg) => { console.error("page_test: FAIL: " + msg); process.exit(1); };
if (!url || !screenshot) fail("usage: node page_test.mjs URL SCREENSHOT.png");
const chromium = process.env.CHROMIUM || "/usr/bin/chromium";
if (!fs.existsSync(chromium)) fail(chromium + " is missing: install Debian's chromium (scripts/setup.sh)");

const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1200, height: 640 });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url, { waitUntil: "networkidle0", timeout: 30000 });
  await page.waitForFunction(() => document.querySelectorAll("#model option").length > 0 &&
                                    document.querySelectorAll("#sampler option").length > 0, { timeout: 10000 });
  const model = await page.$eval("#model", (s) => s.value);
  if (model !== "sigma-shapes") fail("the model list does not default to the bundled model: " + model);
  await page.type("#prompt", "a large red circle on the left on a white background");
  await page.$eval("#seed", (e) => { e.value = "42"; });
  // Count the live previews (data: URLs from the event stream) as they come.
  await page.evaluate(() => {
    window.previews = 0;
    new MutationObserver(() => { if (document.querySelector("#preview").src.startsWith("data:")) window.previews++; })
      .observe(document.querySelector("#preview"), { attributes: true, attributeFilter: ["src"] });
  });
  await page.click("#generate");
  await page.waitForSelector("#gallery .item img", { timeout: 120000 });
  await page.waitForFunction(() => { const i = document.querySelector("#gallery .item img"); return i.complete && i.naturalWidth > 0; },
                             { timeout: 20000 });
  await page.waitForFunction(() => document.querySelector("#status").textContent.startsWith("Done"), { timeout: 20000 });
  const check = await page.evaluate(() => {
    const img = document.querySelector("#gallery .item img");
    const c = document.createElement("canvas");
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let min = 255, max = 0, redLeft = 0, n = 0;
    for (let y = 0; y < c.height; y++)
      for (let x = 0; x < c.width; x++) {
        const i = 4 * (y * c.width + x);
        for (let k = 0; k < 3; k++) { min = Math.min(min, d[i + k]); max = Math.max(max, d[i + k]); }
        if (x < c.width / 2) { n++; if (d[i] > 150 && d[i + 1] < 110 && d[i + 2] < 110) redLeft++; }
      }
    return { width: c.width, height: c.height, min, max, redLeft: redLeft / n,
             parameters: document.querySelector("#gallery .item pre").textContent,
             status: document.querySelector("#status").textContent, previews: window.previews,
             error: document.querySelector("#error").textContent };
  });
  console.log("page_test: " + JSON.stringify({ ...check, parameters: check.parameters.split("\n")[0] }));
  if (check.error) fail("the page shows an error: " + check.error);
  if (check.width !== 128 || check.height !== 128) fail("image is " + check.width + "x" + check.height + ", expected 128x128");
  if (check.max - check.min < 64) fail("the image is blank (pixel range " + check.min + ".." + check.max + ")");
  if (check.redLeft < 0.05) fail("no red on the left half (" + check.redLeft + " of its pixels)");
  if (!check.parameters.includes("Seed: 42") || !check.parameters.includes("Steps: 20")) fail("parameters not shown: " + check.parameters);
  if (check.previews < 1) fail("no live preview arrived");
  if (errors.length) fail("page errors: " + errors.join("; "));
  await page.screenshot({ path: screenshot });
  // A phone: one column, nothing wider than the screen (with a result's long parameters shown).
  await page.setViewport({ width: 390, height: 844 });
  const narrow = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth, innerWidth,
    prompt: document.querySelector("#prompt").getBoundingClientRect().width,
    generate: document.querySelector("#generate").getBoundingClientRect().right,
  }));
  console.log("page_test: at 390 px " + JSON.stringify(narrow));
  if (narrow.scrollWidth > narrow.innerWidth) fail("at 390 px the page is " + narrow.scrollWidth + " px wide: it scrolls sideways");
  if (narrow.prompt < 0.85 * narrow.innerWidth) fail("at 390 px the prompt box is only " + narrow.prompt + " px wide");
  if (narrow.generate > narrow.innerWidth) fail("at 390 px the Generate button ends off screen");
  const narrowShot = screenshot.replace(/(\.png)?$/, "-390.png");
  await page.screenshot({ path: narrowShot, fullPage: true });
  console.log("page_test: ok, screenshot " + screenshot + ", " + narrowShot);
} finally {
  await browser.close();
}
