// The web page in a real browser (label `web`): tests/web/page_test.mjs drives Debian's
// chromium headless through puppeteer-core against a `sigma serve` started here. Missing
// node, chromium or the npm package fail the test with the fix (scripts/setup.sh installs them).
#include "tests/server_support.h"

namespace fs = std::filesystem;

namespace sigma {

TEST_SUITE("web.server_page") {
  TEST_CASE("the page generates with the bundled model and shows the image, its preview and parameters") {
    const auto web = fs::path(test::source_dir()) / "tests" / "web";
    REQUIRE_MESSAGE(std::system("command -v node >/dev/null 2>&1") == 0, "node is missing: run scripts/setup.sh");
    REQUIRE_MESSAGE((fs::exists("/usr/bin/chromium") || std::getenv("CHROMIUM") != nullptr), "chromium is missing: run scripts/setup.sh");
    REQUIRE_MESSAGE(fs::exists(web / "node_modules" / "puppeteer-core"), "puppeteer-core is missing: run scripts/web-test-deps.sh");
    const auto dir = test::scratch("server-web");
    test::ServeProcess s(dir);
    // SIGMA_SCREENSHOT=docs/server-page.png refreshes the screenshot in the docs.
    const char* keep = std::getenv("SIGMA_SCREENSHOT");
    const std::string shot = keep && *keep ? keep : (dir / "page.png").string();
    const auto run = test::run_command("cd " + web.string() + " && node page_test.mjs http://127.0.0.1:" + std::to_string(s.port) +
                                         "/ " + shot);
    INFO(run.output);
    CHECK(run.code == 0);
    CHECK(run.output.find("page_test: ok") != std::string::npos);
    CHECK(fs::exists(shot));
    CHECK(test::count_files(s.out) == 1);
    CHECK(s.stop() == 0);
  }
}

}  // namespace sigma
