"""`mrisr-ray report`: the paper's SSIM/PSNR comparison on the test subjects, with figures."""
