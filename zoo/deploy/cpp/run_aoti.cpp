// Run a model that zoo.deploy compiled with AOTInductor, from C++ (no Python at run time).
//
//   run_aoti MODEL.pt2 INPUT.bin OUTPUT.bin D0 D1 ...
//
// INPUT.bin holds one float32 tensor of shape (D0, D1, ...) in C order; the model's first output is
// written to OUTPUT.bin the same way and its shape printed. Built by zoo.deploy.aoti.build_runner with
// g++ against the headers and libraries inside the torch wheel.
#include <ATen/ATen.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <fstream>
#include <iostream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: " << argv[0] << " MODEL.pt2 INPUT.bin OUTPUT.bin D0 [D1 ...]\n";
    return 2;
  }
  std::vector<int64_t> shape;
  for (int i = 4; i < argc; ++i) shape.push_back(std::stoll(argv[i]));
  at::Tensor input = at::empty(shape, at::kFloat);
  std::ifstream in(argv[2], std::ios::binary);
  in.read(reinterpret_cast<char*>(input.data_ptr<float>()), input.numel() * sizeof(float));
  if (!in || in.peek() != EOF) {
    std::cerr << argv[2] << ": expected exactly " << input.numel() << " float32 values for the given shape\n";
    return 2;
  }
  torch::inductor::AOTIModelPackageLoader loader(argv[1]);
  std::vector<at::Tensor> outputs = loader.run({input});
  at::Tensor out = outputs.at(0).contiguous().to(at::kFloat);
  std::ofstream(argv[3], std::ios::binary)
      .write(reinterpret_cast<const char*>(out.data_ptr<float>()), out.numel() * sizeof(float));
  std::cout << "output shape";
  for (int64_t s : out.sizes()) std::cout << ' ' << s;
  std::cout << '\n';
  return 0;
}
