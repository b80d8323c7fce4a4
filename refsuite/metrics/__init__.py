"""Image-quality and task metrics (SSIM, NRMSE, VAA, AD, RC, PSNR, COV, PVR, ...)."""
