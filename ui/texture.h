// GPU textures for sigma::Image: the live preview, gallery thumbnails, input images,
// ControlNet hints and the mask overlay. One RAII class so a texture is freed exactly
// once, with its GL context still current (AppState dies before the window).
#pragma once

#include <cstdint>
#include <string>

#include "app/image_io.h"  // sigma::Image, through app/ (ui/ includes app/ headers only)

namespace sigma::ui {

class Texture {
 public:
  Texture() = default;
  ~Texture();
  Texture(const Texture&) = delete;
  Texture& operator=(const Texture&) = delete;
  Texture(Texture&& o) noexcept;
  Texture& operator=(Texture&& o) noexcept;

  // Uploads `img` (1, 3 or 4 channels); reuses the GL texture when the size is unchanged.
  void upload(const Image& img);
  void reset();

  bool valid() const { return id_ != 0; }
  void* id() const { return reinterpret_cast<void*>(static_cast<intptr_t>(id_)); }  // ImTextureID
  int width() const { return width_; }
  int height() const { return height_; }
  uint64_t version = 0;  // the caller's: which source version this texture shows

 private:
  unsigned id_ = 0;
  int width_ = 0, height_ = 0, channels_ = 0;
};

// The back buffer as a PNG (call after rendering, before the swap). "" or the error.
std::string save_screenshot(const std::string& path, int width, int height);

}  // namespace sigma::ui
