# Every doctest suite of sigma_tests, with its CTest label.
sigma_add_suite(unit.safetensors unit)
sigma_add_suite(unit.checkpoint unit)
sigma_add_suite(conformance.components conformance)
sigma_add_suite(conformance.tokenizer conformance)
sigma_add_suite(unit.tokenizer unit)
sigma_add_suite(unit.prompt unit)
sigma_add_suite(unit.samplers unit)
sigma_add_suite(conformance.samplers conformance)
sigma_add_suite(unit.preprocess unit)
sigma_add_suite(unit.shapes unit)
sigma_add_suite(e2e.pipeline e2e)
sigma_add_suite(unit.app unit)
sigma_add_suite(e2e.cli e2e)

# The same suites on an NVIDIA GPU (scripts/gpu-test.sh): float32 with TF32 off, and float16.
# `--require-cuda` makes them skip (exit 77, shown as skipped) on a CPU-only machine.
foreach(dtype fp32 fp16)
  foreach(suite conformance.components conformance.samplers e2e.pipeline conformance.adapters conformance.sdxl)
    sigma_add_suite(${suite} gpu NAME gpu.${suite}.${dtype} ARGS --require-cuda
                    ENV SIGMA_TEST_DEVICE=cuda SIGMA_TEST_DTYPE=${dtype})
  endforeach()
endforeach()
sigma_add_suite(unit.jobrunner unit)

# The desktop app under Xvfb: tests/test_gui.cpp runs `sigma-studio --script` on the tiny
# fixture model, one CTest entry per scenario.
if(TARGET sigma-studio)
  add_dependencies(sigma_tests sigma-studio)
  foreach(case generate cancel errors controlnet img2img lora flux soak)
    set(_filter "${case}*")
    if(case STREQUAL "controlnet")
      set(_filter "ControlNet*")
    endif()
    sigma_add_suite(gui.studio gui NAME gui.studio.${case} TIMEOUT 1800 ARGS "--test-case=${_filter}"
                    ENV SIGMA_STUDIO=$<TARGET_FILE:sigma-studio>)
  endforeach()
endif()
# ~5.5 minutes on 2 cores: 352 generated pictures judged (docs/default-model.md has the numbers).
sigma_add_suite(e2e.default_model e2e TIMEOUT 2400)
sigma_add_suite(conformance.sd2 conformance)
sigma_add_suite(conformance.adapters conformance)
sigma_add_suite(unit.adapters unit)

# No silent bad output (issue 14): validation of every number, NaN stages, no PNG on failure.
sigma_add_suite(unit.reliability unit)
sigma_add_suite(e2e.reliability e2e)
# The CLI's whole path on CUDA in fp32, fp16 and bf16 against the CPU's picture.
sigma_add_suite(gpu.cli_path gpu ARGS --require-cuda)
# Out of GPU memory: a clear error, no file, and the next job runs (pipeline, job runner, batch).
sigma_add_suite(gpu.oom gpu ARGS --require-cuda)
# Tiled VAE (models/vae/tiling.h) against the untiled networks, on the CPU and on CUDA with offload.
sigma_add_suite(unit.vae_tiling unit)
sigma_add_suite(gpu.vae_tiling gpu ARGS --require-cuda)
# --lowvram: weights in host memory, the same picture (tests/test_gpu_cli.cpp).
sigma_add_suite(gpu.lowvram gpu ARGS --require-cuda)
sigma_add_suite(conformance.sdxl conformance)
sigma_add_suite(unit.sdxl unit)
# Flux.1 on flux-tiny and T5's tokenizer (tests/test_flux.cpp).
sigma_add_suite(conformance.flux conformance)
sigma_add_suite(conformance.t5_tokenizer conformance)
sigma_add_suite(e2e.flux e2e)
# Flux on an NVIDIA GPU in float32 and in bfloat16, the precision Flux runs in.
foreach(dtype fp32 bf16)
  sigma_add_suite(conformance.flux gpu NAME gpu.conformance.flux.${dtype} ARGS --require-cuda
                  ENV SIGMA_TEST_DEVICE=cuda SIGMA_TEST_DTYPE=${dtype})
endforeach()
# The app side of LoRA and textual inversion (app/adapters.h, tests/test_lora_app.cpp).
sigma_add_suite(unit.lora_app unit)
sigma_add_suite(e2e.lora_app e2e)
sigma_add_suite(e2e.server e2e TIMEOUT 900)
sigma_add_suite(e2e.server_security e2e TIMEOUT 600)
sigma_add_suite(web.server_page web TIMEOUT 300)
sigma_add_suite(e2e.server_load e2e TIMEOUT 600)
# Faults and load (issue 14): 4 `sigma batch` shards SIGKILLed at random moments and
# restarted until done (scripts/soak.sh: the same with 1,000 jobs).
sigma_add_suite(e2e.kill_resume e2e TIMEOUT 600)
# What fuzzing found, each fix with its input (tests/fuzz/*/corpus/regress-*); the reader
# when a checkpoint changes under it; stale temporaries of killed batch shards.
sigma_add_suite(unit.fuzz_regressions unit)
# The fused GroupNorm + SiLU (models/kernels/cuda_ops.h): LibTorch's on the CPU, the CUDA kernels against float64.
sigma_add_suite(unit.group_norm unit)
sigma_add_suite(gpu.group_norm gpu ARGS --require-cuda)
# The AVX-512 CPU kernels (models/kernels/cpu/) and the bf16 norm detours (models/kernels/cpu_ops.h).
sigma_add_suite(unit.cpu_kernels unit)
# Issue 25, an attacker's probe: deep JSON, browsers and DNS rebinding, symlinks out,
# unbounded work, leaks and status codes, messages (tests/test_server_hardening.cpp).
sigma_add_suite(unit.hardening unit)
sigma_add_suite(e2e.server_hardening e2e TIMEOUT 600)
sigma_add_suite(e2e.cli_hardening e2e TIMEOUT 600)
