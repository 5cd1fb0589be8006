// `sigma train`, `sigma train-hints`, `sigma eval-shapes`: the bundled model's trainer and
// its checker (issue 6). scripts/train-default-model.sh is the exact recipe.
#include <memory>

#include "app/cli/cli.h"
#include "app/training/train.h"
#ifdef SIGMA_WITH_OPENCV
#include "app/training/shape_eval.h"
#endif

namespace sigma::app {

void register_train(CLI::App& app, CliState& state) {
  auto o = std::make_shared<TrainOptions>();
  auto* train_cmd = app.add_subcommand("train", "train a stage of the bundled shapes model (vae, unet, flow, controlnet)");
  train_cmd->add_option("stage", o->stage, "vae | unet | flow | controlnet")->required();
  train_cmd->add_option("-o,--out", o->out_dir, "folder for checkpoints, the loss log and the exported model")->default_val("train-out");
  train_cmd->add_option("--vae", o->vae, "unet: the VAE from `sigma train vae`");
  train_cmd->add_option("--base", o->base, "flow, controlnet: the epsilon model from `sigma train unet`");
  train_cmd->add_option("--hints", o->hints, "controlnet: canny hint pack from `sigma train-hints`");
  train_cmd->add_option("--init", o->init, "unet, flow: continue from this exported checkpoint's weights");
  train_cmd->add_option("--steps", o->steps, "optimizer steps")->default_val(1000);
  train_cmd->add_option("--batch", o->batch, "batch size")->default_val(64);
  train_cmd->add_option("--lr", o->lr, "peak learning rate (linear warm-up, cosine decay to 10%)")->default_val(2e-4);
  train_cmd->add_option("--weight-decay", o->weight_decay, "AdamW decoupled weight decay")->default_val(0.01);
  train_cmd->add_option("--ema", o->ema, "EMA decay of the exported weights")->default_val(0.999);
  train_cmd->add_option("--warmup", o->warmup, "warm-up steps")->default_val(200);
  train_cmd->add_option("--max-seconds", o->max_seconds, "also end the schedule after this many seconds (0: no limit)")->default_val(0);
  train_cmd->add_option("--pool", o->pool, "distinct shape-world samples generated up front")->default_val(20000);
  train_cmd->add_option("--min-objects", o->min_objects, "objects per scene in the pool, at least (1-3)")->default_val(1);
  train_cmd->add_option("--max-objects", o->max_objects, "objects per scene in the pool, at most (1-3)")->default_val(3);
  train_cmd->add_option("--seed", o->seed, "first shape-world seed and RNG seed")->default_val(1);
  train_cmd->add_option("--device", o->device, "auto | cpu | cuda")->default_val("auto");
  train_cmd->add_option("--threads", o->threads, "data generation threads (0: all cores)")->default_val(0);
  train_cmd->add_option("--log-every", o->log_every, "steps between loss log lines")->default_val(50);
  train_cmd->add_option("--save-every", o->save_every, "steps between resumable checkpoints")->default_val(1000);
  train_cmd->add_flag("!--no-amp", o->amp, "train in float32 on CUDA instead of bf16 autocast");
  train_cmd->add_flag("!--no-resume", o->resume, "start over even if OUT holds a checkpoint of this stage");
  train_cmd->callback([o, &state] {
    std::printf("%s\n", train(*o).c_str());
    state.exit_code = 0;
  });

#ifdef SIGMA_WITH_OPENCV
  struct HintArgs {
    uint64_t first = 1;
    int64_t count = 20000;
    std::string out = "hints.safetensors";
  };
  auto h = std::make_shared<HintArgs>();
  auto* hints = app.add_subcommand("train-hints", "canny hints of shape-world seeds for ControlNet training (needs OpenCV)");
  hints->add_option("--first-seed", h->first, "first scene seed (use the ControlNet run's --seed)")->default_val(1);
  hints->add_option("--count", h->count, "number of scenes")->default_val(20000);
  hints->add_option("-o,--output", h->out, "output .safetensors")->default_val("hints.safetensors");
  hints->callback([h, &state] {
    std::printf("%s\n", make_hint_pack(h->first, h->count, h->out).c_str());
    state.exit_code = 0;
  });

  auto e = std::make_shared<EvalOptions>();
  e->base.sampler = "dpmpp_2m";
  e->base.scheduler = "karras";
  e->base.steps = 20;
  e->base.cfg = 5;
  auto* ev = app.add_subcommand("eval-shapes", "judge the bundled model: generate from grammar captions, check colour/shape/size/position with OpenCV");
  ev->add_option("-m,--model", e->model, "model to judge (default: the bundled model)");
  ev->add_option("--control-net", e->controlnet, "also judge this ControlNet: IoU of the generated shape with its canny hint");
  ev->add_option("-n,--count", e->count, "prompts")->default_val(32);
  ev->add_option("--objects", e->objects, "objects per prompt (1-3)")->default_val(1);
  ev->add_option("--first-seed", e->first_seed, "seed of the first prompt's scene and image")->default_val(900000);
  ev->add_option("--sampler", e->base.sampler, "solver")->default_val("dpmpp_2m");
  ev->add_option("--scheduler", e->base.scheduler, "sigma schedule")->default_val("karras");
  ev->add_option("--steps", e->base.steps, "steps")->default_val(20);
  ev->add_option("--cfg", e->base.cfg, "guidance scale")->default_val(5.0);
  ev->add_option("--device", e->base.device, "auto | cpu | cuda")->default_val("auto");
  ev->add_option("--save", e->save_dir, "write every generated picture to this folder");
  ev->callback([e, &state] {
    const auto r = eval_shapes(*e);
    std::printf("%s\n", r.summary().c_str());
    state.exit_code = 0;
  });
#endif
}

}  // namespace sigma::app
