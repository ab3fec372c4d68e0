//! Matrix products on borrowed f32 slices through `gemm`, the kernel candle's own matmul uses
//! (so they get the same runtime SIMD dispatch), for fused CPU operations that compute inside
//! their own buffers: strided views instead of copies, and accumulation into a destination
//! (`dst += a · b`) instead of a product and an addition.

/// A matrix read in place: element `(i, j)` is `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    data: &'a [f32],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    /// A row-major `rows x cols` matrix starting at `data[0]` with row stride `row_stride`.
    pub(crate) fn rows(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        View {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    pub(crate) fn t(self) -> Self {
        View {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `dst = scale · a · b`, or `dst += scale · a · b` with `accumulate`, where `dst` is row-major
/// `a.rows x b.cols` with row stride `dst_stride`, on the calling thread (for kernels that
/// split their work between threads themselves).
pub(crate) fn matmul_into(
    dst: &mut [f32],
    dst_stride: usize,
    a: View,
    b: View,
    scale: f32,
    accumulate: bool,
) {
    product(
        dst,
        dst_stride,
        a,
        b,
        scale,
        accumulate,
        gemm::Parallelism::None,
    );
}

/// [`matmul_into`] on every thread of the pool (for one large product).
pub(crate) fn parallel_matmul_into(
    dst: &mut [f32],
    dst_stride: usize,
    a: View,
    b: View,
    scale: f32,
    accumulate: bool,
) {
    let threads = rayon::current_num_threads();
    let parallelism = match threads {
        1 => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    };
    product(dst, dst_stride, a, b, scale, accumulate, parallelism);
}

fn product(
    dst: &mut [f32],
    dst_stride: usize,
    a: View,
    b: View,
    scale: f32,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    assert!(
        a.cols == b.rows && a.fits() && b.fits(),
        "matmul operands out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        dst_stride >= n && (m - 1) * dst_stride + n <= dst.len(),
        "matmul destination out of bounds"
    );
    // SAFETY: the assertions above keep every element gemm reads inside `a.data` and `b.data`
    // and every element it writes inside `dst`; rows of `dst` do not overlap (stride >= n),
    // and `dst` cannot alias the inputs (a `&mut` beside two `&`).
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}
