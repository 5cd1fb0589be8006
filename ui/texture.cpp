// Image -> GL texture upload. Gray images are expanded to RGB on upload (core profile
// has no GL_LUMINANCE); rows are byte-aligned, so GL_UNPACK_ALIGNMENT is set to 1.
#include "ui/texture.h"

#define GLFW_INCLUDE_NONE
#include <GL/gl.h>

#include <stb_image_write.h>

#include <filesystem>
#include <utility>
#include <vector>

#ifndef GL_CLAMP_TO_EDGE
#define GL_CLAMP_TO_EDGE 0x812F
#endif

namespace sigma::ui {

Texture::~Texture() { reset(); }

Texture::Texture(Texture&& o) noexcept { *this = std::move(o); }

Texture& Texture::operator=(Texture&& o) noexcept {
  if (this != &o) {
    reset();
    std::swap(id_, o.id_);
    width_ = o.width_;
    height_ = o.height_;
    channels_ = o.channels_;
    version = o.version;
  }
  return *this;
}

void Texture::reset() {
  if (id_ != 0) {
    GLuint id = id_;
    glDeleteTextures(1, &id);
  }
  id_ = 0;
  width_ = height_ = channels_ = 0;
}

void Texture::upload(const Image& img) {
  if (!img.valid()) return;
  const Image* src = &img;
  Image rgb;
  if (img.channels == 1) {  // gray -> RGB
    rgb = Image(img.width, img.height, 3);
    for (size_t i = 0; i < img.pixels.size(); ++i) rgb.pixels[3 * i] = rgb.pixels[3 * i + 1] = rgb.pixels[3 * i + 2] = img.pixels[i];
    src = &rgb;
  }
  const GLenum format = src->channels == 4 ? GL_RGBA : GL_RGB;
  glPixelStorei(GL_UNPACK_ALIGNMENT, 1);
  if (id_ != 0 && width_ == src->width && height_ == src->height && channels_ == src->channels) {
    glBindTexture(GL_TEXTURE_2D, id_);
    glTexSubImage2D(GL_TEXTURE_2D, 0, 0, 0, src->width, src->height, format, GL_UNSIGNED_BYTE, src->pixels.data());
    return;
  }
  reset();
  GLuint id = 0;
  glGenTextures(1, &id);
  id_ = id;
  glBindTexture(GL_TEXTURE_2D, id_);
  // Linear filtering: previews are small latents shown large, gallery images shown small.
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_LINEAR);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_LINEAR);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
  glTexImage2D(GL_TEXTURE_2D, 0, src->channels == 4 ? GL_RGBA : GL_RGB, src->width, src->height, 0, format, GL_UNSIGNED_BYTE,
               src->pixels.data());
  width_ = src->width;
  height_ = src->height;
  channels_ = src->channels;
}

std::string save_screenshot(const std::string& path, int width, int height) {
  if (width <= 0 || height <= 0) return "screenshot: the window has no size";
  std::vector<unsigned char> pixels(static_cast<size_t>(width) * static_cast<size_t>(height) * 3);
  glPixelStorei(GL_PACK_ALIGNMENT, 1);
  glReadBuffer(GL_BACK);
  glReadPixels(0, 0, width, height, GL_RGB, GL_UNSIGNED_BYTE, pixels.data());
  if (const GLenum err = glGetError(); err != GL_NO_ERROR) return "screenshot: glReadPixels failed (GL error " + std::to_string(err) + ")";
  std::error_code ec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  stbi_flip_vertically_on_write(1);  // GL rows start at the bottom
  if (!stbi_write_png(path.c_str(), width, height, 3, pixels.data(), width * 3)) return "screenshot: cannot write " + path;
  return "";
}

}  // namespace sigma::ui
