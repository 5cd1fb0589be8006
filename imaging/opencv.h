// Image <-> cv::Mat for code that works in OpenCV (the hint preprocessors, the shape
// world's judge). Include <opencv2/core.hpp> to use them; built only where OpenCV is.
#pragma once

#include "imaging/image.h"

namespace cv {
class Mat;
}

namespace sigma::imaging {

// The Mat keeps the Image's channel order (RGB, not OpenCV's usual BGR) and owns a copy.
cv::Mat to_mat(const Image& image);
Image from_mat(const cv::Mat& mat);  // CV_8UC1/3/4; anything else => invalid_argument

}  // namespace sigma::imaging
