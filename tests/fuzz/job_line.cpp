// Job-file lines into requests (app/cli/jobs.h parse_job_line), as `sigma batch` reads
// them: each line of the input is one line of a .jsonl file. A line never throws: a bad
// one becomes a job with its error set; a good one is a validated request.
#include "app/cli/jobs.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sigma::app;
  if (size > (64u << 10)) return -1;
  const std::string input = sigma::fuzz::as_string(data, size);
  size_t at = 0;
  int line = 0;
  int64_t ordinal = 0;
  while (at <= input.size()) {
    size_t nl = input.find('\n', at);
    if (nl == std::string::npos) nl = input.size();
    const auto job = parse_job_line(input.substr(at, nl - at), ++line, ordinal);
    if (job) {
      ++ordinal;
      if (job->error.empty()) {
        validate(job->request);  // must not throw: the line was accepted
        const auto outputs = job_outputs(*job, "out", "jobs");
        if (outputs.size() != size_t(job->request.batch_size * job->request.batch_count)) __builtin_trap();
      }
    }
    at = nl + 1;
  }
  return 0;
}
